"""Built-in task generators, one module each: `sample(rng, steps, cfg)`, `answer`, `count`.

`sample` returns {input, target, steps, scratchpad}; the scratchpad lists the intermediate
results, its last item being the answer.
"""

from msr.data.tasks import arith, chain, kinship, listops, logic

TASKS = {"arith": arith, "chain": chain, "listops": listops, "logic": logic, "kinship": kinship}
