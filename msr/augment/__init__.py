"""Data augmentation for `msr augment`: the operations live in `msr.augment.operations`."""

# Next to the splits it writes, the built-in task they were written from: a teacher trained on
# these files is known to label that task (msr.augment.teacher), which lets self-training
# iterate. It lives in data/ itself, so it travels with the folder wherever data.path points.
TASK_RECORD = "task.json"
