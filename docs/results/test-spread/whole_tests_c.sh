#!/bin/bash
cd /work/wt-tests/build/tests
export RL_TEST_TMP=/tmp/tspread/env OMP_WAIT_POLICY=PASSIVE
for c in Prescott Haswell SkylakeX Cooperlake Sandybridge; do
  for t in 1 2 4; do
    for exe in test_multilabel; do
      out=$(OPENBLAS_CORETYPE=$c OMP_NUM_THREADS=$t ./$exe 2>&1); rc=$?
      echo -e "$exe\t$c\t$t\t$rc\t$(echo "$out" | tail -1)\t$(echo "$out" | sed -n 's/.*(ratio \(.*\))/\1/p')"
    done
  done
done
for c in Haswell SkylakeX Cooperlake Sandybridge; do
  for exe in test_trainer test_pseudolabel; do
    out=$(OPENBLAS_CORETYPE=$c OMP_NUM_THREADS=3 ./$exe 2>&1); rc=$?
    echo -e "$exe\t$c\t3\t$rc\t$(echo "$out" | tail -1)"
  done
done
