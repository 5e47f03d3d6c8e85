-- pivq.train: training the PI-VQ model (`pivq train`, the specs, the notebooks).
--
--   pivq.train.Trainer(opts)      a run (pivq.train.Trainer); run:fit() trains
--   pivq.train.options            every option: {name, default, help} (`pivq train --help`)
--   pivq.train.defaults()         {name = default}
--   pivq.train.spin_warning(...)  the busy-machine warning (pivq.train.options)
--   pivq.train.laplacian_l1(x, y) the Laplacian-pyramid L1 term of the loss
local options = require "pivq.train.options"
local Trainer = require "pivq.train.Trainer"

return {
  Trainer = Trainer.new,
  options = options.list,
  defaults = options.defaults,
  spin_warning = options.spin_warning,
  laplacian_l1 = Trainer.laplacian_l1,
}
