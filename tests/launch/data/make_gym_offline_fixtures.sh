#!/bin/bash
# How tests/launch/data/*-mixed.npz were made (issue 25): a D4PG expert per task, then one file
# per task with the expert (action noise 0.1), the expert with heavy noise (1.0) and random
# episodes. The benchmark datasets (benchmarks/RESULTS.md, "gymnasium datasets") are the same
# commands with more episodes and --format hdf5.
set -euo pipefail
antiphon train --agent d4pg --critic-type c51 --v-min -1700 --v-max 100 --env gym:Pendulum-v1 \
  --steps 20000 --samples-per-insert 256 --policy-learning-rate 1e-3 --critic-learning-rate 1e-3 \
  --eval-every 2500 --eval-episodes 5 --seed 0 --run-dir runs/pendulum-d4pg
antiphon train --agent d4pg --critic-type c51 --v-min -10 --v-max 110 --env gym:InvertedPendulum-v5 \
  --steps 20000 --samples-per-insert 128 --policy-learning-rate 1e-3 --critic-learning-rate 1e-3 \
  --eval-every 2500 --eval-episodes 5 --seed 0 --run-dir runs/invpend-d4pg
antiphon collect --env gym:Pendulum-v1 --policy runs/pendulum-d4pg@latest \
  --policy runs/pendulum-d4pg@latest --policy random --action-noise 0.1 --action-noise 1.0 \
  --action-noise 0 --episodes 20 --seed 100 --format npz --out tests/launch/data/pendulum-mixed.npz
antiphon collect --env gym:InvertedPendulum-v5 --policy runs/invpend-d4pg@latest \
  --policy runs/invpend-d4pg@latest --policy random --action-noise 0.1 --action-noise 1.0 \
  --action-noise 0 --episodes 10 --seed 100 --format npz \
  --out tests/launch/data/inverted_pendulum-mixed.npz
