"""antiphon benchmarks (see /work/shared/BENCHMARKS.md); `make bench` runs benchmarks.run_quick."""

import os

# Before anything imports TensorFlow (via Reverb): keep its C++ chatter out of the tables.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
