"""The native benchmark binaries (benchmark_model, onnxruntime_perf_test, trtexec): their
command lines and the parsers of their output, which land in the runner's result schema."""
