"""Data augmentation for `msr augment`: the operations live in `msr.augment.operations`."""
