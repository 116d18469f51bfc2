#!/bin/bash
# Raw output: test, OPENBLAS_CORETYPE, threads, exit status, printed lines, summary.
# The small CLI tests with a learned outcome under each kernel set (1 thread
# as in the files) and with 2 threads (copies in /tmp/tspread/cli-t2).
export RL_TEST_TMP=/tmp/tspread/env
B=/work/wt-tests/build/reflabel
while pgrep -f ctests2.sh >/dev/null; do sleep 10; done
for t in test_train_warnings test_nonfinite test_train_options test_predict_nifti test_pseudolabel; do
  for c in Prescott Haswell SkylakeX Cooperlake Sandybridge; do
    out=$(OPENBLAS_CORETYPE=$c /usr/bin/python3 /work/wt-tests/tests/cli/$t.py $B 2>&1); rc=$?
    echo -e "$t\t$c\t1\t$rc\t$(echo "$out" | grep -v '^cli_' | tr '\n' ' ' | cut -c1-300)\t$(echo "$out" | tail -1)"
  done
  for c in Prescott Haswell; do
    out=$(OPENBLAS_CORETYPE=$c /usr/bin/python3 /tmp/tspread/cli-t2/$t.py $B 2>&1); rc=$?
    echo -e "$t\t$c\t2\t$rc\t$(echo "$out" | grep -v '^cli_' | tr '\n' ' ' | cut -c1-300)\t$(echo "$out" | tail -1)"
  done
done
