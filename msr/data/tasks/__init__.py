"""Built-in task generators, one module each: `sample(rng, steps, cfg)`, `answer`, `count`."""

from msr.data.tasks import arith, chain, listops, logic

TASKS = {"arith": arith, "chain": chain, "listops": listops, "logic": logic}
