"""Built-in tasks, one module each, holding all the task knows:

- `sample(rng, steps, cfg)`: a generated example {input, target, steps, scratchpad}; the
  scratchpad lists the intermediate results, its last item being the answer;
- `answer` (the task's own solver), `parse` (the one reader of its inputs), `count`;
- `REWRITES`: {operation name: rewrite}, the edits msr augment may apply to the task's
  inputs (msr.data.tasks.rewriting says what a rewrite must do).
"""

from msr.data.tasks import arith, chain, kinship, listops, logic

TASKS = {"arith": arith, "chain": chain, "listops": listops, "logic": logic, "kinship": kinship}
