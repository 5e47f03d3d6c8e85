/* io/file.c — file helpers shared by the readers and writers: bounded whole-file reads,
 * atomic replacement (temporary file + fsync + rename), and the string list type.
 *
 * Atomicity matters for checkpoints: a crash or a full disk in the middle of a save must
 * leave the previous file intact, so we never open the destination for writing. */
#include "io/io.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

int pivq_read_file(const char *fname, const char *path, int64_t max_bytes, unsigned char **out,
                   size_t *len)
{
    *out = NULL;
    *len = 0;
    if (!path) return pivq_set_error("%s: path is NULL", fname);
    FILE *f = fopen(path, "rb");
    if (!f) return pivq_set_error("%s: cannot open %s: %s", fname, path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return pivq_set_error("%s: %s is not a regular file", fname, path);
    }
    if ((int64_t)st.st_size > max_bytes) {
        fclose(f);
        return pivq_set_error("%s: %s is too large (%lld bytes, limit %lld)", fname, path,
                              (long long)st.st_size, (long long)max_bytes);
    }
    size_t n = (size_t)st.st_size;
    unsigned char *buf = malloc(n ? n : 1);
    if (!buf) {
        fclose(f);
        return pivq_set_error("%s: out of memory reading %s (%zu bytes)", fname, path, n);
    }
    size_t got = fread(buf, 1, n, f);
    int err = ferror(f);
    fclose(f);
    if (got != n || err) {
        free(buf);
        return pivq_set_error("%s: read error on %s (got %zu of %zu bytes)", fname, path, got, n);
    }
    *out = buf;
    *len = n;
    return 0;
}

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

int pivq_atomic_open(pivq_atomic_file *af, const char *fname, const char *path)
{
    memset(af, 0, sizeof *af);
    if (!path || !*path) return pivq_set_error("%s: path is empty", fname);
    size_t n = strlen(path);
    af->path = dup_str(path);
    af->tmp_path = malloc(n + 16);
    if (!af->path || !af->tmp_path) {
        pivq_atomic_abort(af);
        return pivq_set_error("%s: out of memory", fname);
    }
    /* same folder as the target, so that rename() is atomic (no cross-device move) */
    snprintf(af->tmp_path, n + 16, "%s.tmp-XXXXXX", path);
    int fd = mkstemp(af->tmp_path);
    if (fd < 0) {
        int e = errno;
        free(af->tmp_path);
        af->tmp_path = NULL;
        pivq_atomic_abort(af);
        return pivq_set_error("%s: cannot create a temporary file beside %s: %s", fname, path,
                              strerror(e));
    }
    /* mkstemp creates 0600; a saved file should be as readable as one made by fopen */
    (void)fchmod(fd, 0644);
    af->f = fdopen(fd, "wb");
    if (!af->f) {
        int e = errno;
        close(fd);
        pivq_atomic_abort(af);
        return pivq_set_error("%s: cannot open a temporary file for %s: %s", fname, path,
                              strerror(e));
    }
    return 0;
}

void pivq_atomic_abort(pivq_atomic_file *af)
{
    if (af->f) fclose(af->f);
    if (af->tmp_path) unlink(af->tmp_path);
    free(af->tmp_path);
    free(af->path);
    memset(af, 0, sizeof *af);
}

int pivq_atomic_commit(pivq_atomic_file *af, const char *fname)
{
    int e = 0;
    if (fflush(af->f) != 0 || ferror(af->f)) e = errno ? errno : EIO;
    /* fsync before rename: otherwise a crash can leave the new name on empty contents */
    if (!e && fsync(fileno(af->f)) != 0) e = errno;
    int rc = fclose(af->f);
    af->f = NULL;
    if (!e && rc != 0) e = errno;
    if (!e && rename(af->tmp_path, af->path) != 0) e = errno;
    if (e) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s: cannot write %s: %s", fname, af->path, strerror(e));
        pivq_atomic_abort(af);
        return pivq_set_error("%s", msg);
    }
    /* make the rename itself durable; failure here is not worth failing the save */
    char *slash = strrchr(af->path, '/');
    char *dir = slash ? af->path : NULL;
    if (slash) *slash = '\0';
    int dfd = open(dir ? (slash == af->path ? "/" : dir) : ".", O_RDONLY | O_DIRECTORY);
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
    free(af->tmp_path);
    free(af->path);
    memset(af, 0, sizeof *af);
    return 0;
}

int pivq_write_file_atomic(const char *path, const void *data, size_t len)
{
    if (!data && len) return pivq_set_error("write_file: %s: data is NULL", path ? path : "(null)");
    pivq_atomic_file af;
    if (pivq_atomic_open(&af, "write_file", path)) return -1;
    if (len && fwrite(data, 1, len, af.f) != len) {
        int e = errno ? errno : EIO;
        pivq_set_error("write_file: cannot write %s: %s", path, strerror(e));
        pivq_atomic_abort(&af);
        return -1;
    }
    return pivq_atomic_commit(&af, "write_file");
}

/* The names pivq_atomic_open gives: "<base>.tmp-" and the 6 characters mkstemp chose. */
static int is_temp_of(const char *name, const char *base, size_t blen)
{
    if (strncmp(name, base, blen) != 0 || strncmp(name + blen, ".tmp-", 5) != 0) return 0;
    const char *x = name + blen + 5;
    for (int i = 0; i < 6; i++)
        if (!((x[i] >= '0' && x[i] <= '9') || (x[i] >= 'a' && x[i] <= 'z') ||
              (x[i] >= 'A' && x[i] <= 'Z')))
            return 0;
    return x[6] == '\0';
}

int pivq_atomic_remove_stale(const char *path)
{
    if (!path || !*path) return pivq_set_error("atomic_remove_stale: path is empty");
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    size_t blen = strlen(base);
    if (blen == 0)
        return pivq_set_error("atomic_remove_stale: %s names a folder, not a file", path);
    char *dir = dup_str(slash ? path : ".");
    if (!dir) return pivq_set_error("atomic_remove_stale: out of memory");
    if (slash) dir[slash == path ? 1 : slash - path] = '\0';
    DIR *d = opendir(dir);
    if (!d) {
        int e = errno;
        pivq_set_error("atomic_remove_stale: cannot open the folder %s: %s", dir, strerror(e));
        free(dir);
        return -1;
    }
    int removed = 0, rc = 0;
    struct dirent *ent;
    while ((ent = readdir(d)) != NULL) {
        if (!is_temp_of(ent->d_name, base, blen)) continue;
        if (unlinkat(dirfd(d), ent->d_name, 0) == 0) {
            removed++;
        } else if (errno != ENOENT) {
            rc = pivq_set_error("atomic_remove_stale: cannot remove %s/%s: %s", dir, ent->d_name,
                                strerror(errno));
            break;
        }
    }
    closedir(d);
    free(dir);
    return rc ? rc : removed;
}

int pivq_mkdir_p(const char *path)
{
    if (!path || !*path) return pivq_set_error("mkdir_p: path is empty");
    char *p = dup_str(path);
    if (!p) return pivq_set_error("mkdir_p: out of memory");
    /* each prefix ending at a '/', then the whole path; existing folders are fine */
    for (char *s = p + 1;; s++) {
        if (*s != '/' && *s != '\0') continue;
        char c = *s;
        *s = '\0';
        if (mkdir(p, 0777) != 0 && errno != EEXIST) {
            int e = errno;
            pivq_set_error("mkdir_p: cannot create the folder %s: %s", p, strerror(e));
            free(p);
            return -1;
        }
        *s = c;
        if (c == '\0') break;
    }
    struct stat st;
    int ok = stat(p, &st) == 0 && S_ISDIR(st.st_mode);
    free(p);
    if (!ok) return pivq_set_error("mkdir_p: %s exists and is not a folder", path);
    return 0;
}

int pivq_lock_acquire(const char *path, int64_t *holder)
{
    if (holder) *holder = 0;
    if (!path || !*path) return pivq_set_error("lock: path is empty");
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return pivq_set_error("lock: cannot open %s: %s", path, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        char buf[32] = {0};
        ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
        long long pid = n > 0 ? strtoll(buf, NULL, 10) : 0;
        close(fd);
        if (holder) *holder = pid;
        if (e == EWOULDBLOCK)
            return pivq_set_error("lock: %s is held by another process (PID %lld)", path, pid);
        return pivq_set_error("lock: cannot lock %s: %s", path, strerror(e));
    }
    /* the holder's PID, for the message a second writer gets; a killed holder's lock is
       released by the kernel with its descriptors, so a stale file never blocks */
    char buf[32];
    int len = snprintf(buf, sizeof buf, "%lld\n", (long long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, buf, (size_t)len, 0) != len) {
        int e = errno;
        close(fd);
        return pivq_set_error("lock: cannot write %s: %s", path, strerror(e));
    }
    return fd;
}

void pivq_lock_release(int fd)
{
    if (fd >= 0) close(fd);
}

struct pivq_strings {
    char **items;
    int64_t n;
};

pivq_strings *pivq_strings_new(char **items, int64_t n)
{
    pivq_strings *s = malloc(sizeof *s);
    if (!s) {
        for (int64_t i = 0; i < n; i++)
            free(items[i]);
        free(items);
        pivq_set_error("strings: out of memory");
        return NULL;
    }
    s->items = items;
    s->n = n;
    return s;
}

int64_t pivq_strings_count(const pivq_strings *s)
{
    return s ? s->n : 0;
}

const char *pivq_strings_get(const pivq_strings *s, int64_t i)
{
    if (!s || i < 0 || i >= s->n) return NULL;
    return s->items[i];
}

void pivq_strings_free(pivq_strings *s)
{
    if (!s) return;
    for (int64_t i = 0; i < s->n; i++)
        free(s->items[i]);
    free(s->items);
    free(s);
}
