"""fp8suite: FP8 training experiments with Megatron-Core on Hopper GPUs.

Data flow, with pure functions in the middle and file I/O only at the edges:

    YAML -> typed config -> expanded runs (checks here) -> rendered scripts -> files   (render)
    logs -> step records + run status -> summaries -> markdown + PNG                   (report)
"""

__version__ = "0.1.0"
