"""The benchmarks: commands that print numbers. `component`: the component against the reference
loop, and in several precisions; `engines`: in-process against llama-server on the same student;
`teacher`: distillation throughput at several teacher concurrencies; `measure`: what they measure with."""
