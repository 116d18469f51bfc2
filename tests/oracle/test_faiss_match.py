"""The matcher against faiss IndexFlatIP, an independent exact search.

tests/tool_match builds a bank from random references, matches random
queries and writes both plus its answer; faiss then searches the same
L2-normalised vectors (raw ones for --dot). Checks, per configuration:
  - best index equal to faiss's (k=1), or the k best in the same order
    (top-k); an index may differ only where the two similarities are equal
    within 1e-6 in float64 (a tie);
  - similarities within 1e-5;
  - the label: that of the best reference (k=1) or the similarity-weighted
    vote of the k best (ties in the vote total go to the lower label);
  - the margin: best similarity of the label minus the best of any other
    label, from the full similarity matrix in numpy;
  - multi-label banks (references carry random 62-bit masks): the bit mask
    is that of faiss's best neighbour (k=1) or of the voted label, labels
    and margins as above over the distinct masks, and a naive numpy search
    (argmax of the full matrix) agrees with faiss.
Usage: test_faiss_match.py BUILD_DIR. The last line is "N passed, M failed".
"""
import os
import subprocess
import sys
import tempfile

import faiss  # a missing oracle must fail the test, not skip it
import numpy as np

from oracle_checks import check, report

BUILD = sys.argv[1]
TOOL = os.path.join(BUILD, "tests", "tool_match")



def load(d, name):
    return np.load(os.path.join(d, name))


def run_case(name, queries=1000, refs=4000, dim=16, classes=5, k=1, tile=None, dot=False,
             threading=None, seed=1, multilabel=False):
    tmp_root = os.environ.get("RL_TEST_TMP")
    if tmp_root:
        os.makedirs(tmp_root, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=tmp_root) as d:
        args = [TOOL, d, "--queries", str(queries), "--refs", str(refs), "--dim", str(dim),
                "--classes", str(classes), "--top-k", str(k), "--seed", str(seed)]
        if tile:
            args += ["--tile", tile]
        if dot:
            args += ["--dot"]
        if threading:
            args += ["--threading", threading]
        if multilabel:
            args += ["--multilabel"]
        run = subprocess.run(args, capture_output=True, text=True, timeout=120)
        check(run.returncode == 0, f"{name}: tool_match failed: {run.stderr.strip()}")
        if run.returncode != 0:
            return
        q = load(d, "queries.npy").astype(np.float32)
        r = load(d, "refs.npy").astype(np.float32)
        ref_labels = load(d, "ref_labels.npy")
        label, index = load(d, "label.npy"), load(d, "index.npy").astype(np.int64)
        sim, margin = load(d, "similarity.npy"), load(d, "margin.npy")
        if not dot:
            q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-30)
            r = r / np.maximum(np.linalg.norm(r, axis=1, keepdims=True), 1e-30)
        q = np.ascontiguousarray(q, dtype=np.float32)
        r = np.ascontiguousarray(r, dtype=np.float32)
        check(r.shape[0] == refs - refs % 4, f"{name}: bank holds {r.shape[0]} references")

        faiss.omp_set_num_threads(2)
        ix = faiss.IndexFlatIP(dim)
        ix.add(r)
        f_sim, f_idx = ix.search(q, k)
        full = q.astype(np.float64) @ r.astype(np.float64).T  # small sizes only

        def tie(rows, a, b):
            return np.abs(full[rows, a] - full[rows, b]) <= 1e-6

        rows = np.arange(q.shape[0])
        if k == 1:
            ours_idx, ours_sim = index[:, None], sim[:, None]
        else:
            ours_idx = load(d, "topk_index.npy").astype(np.int64)
            ours_sim = load(d, "topk_similarity.npy")
        bad_idx = 0
        for j in range(k):
            differ = ours_idx[:, j] != f_idx[:, j]
            bad_idx += int(np.sum(differ & ~tie(rows, ours_idx[:, j], f_idx[:, j])))
        check(bad_idx == 0, f"{name}: {bad_idx} indices differ from faiss beyond ties")
        sim_err = float(np.max(np.abs(ours_sim - f_sim)))
        check(sim_err <= 1e-5, f"{name}: similarity differs from faiss by {sim_err}")

        if multilabel:
            ref_masks, mask = load(d, "ref_masks.npy"), load(d, "mask.npy")
            # ids name masks one to one, in the order the bank met them
            ids = {}
            for i, m in zip(ref_labels.tolist(), ref_masks.tolist()):
                ids.setdefault(i, m)
            masks = len(set(ids.values()))
            check(len(ids) == masks == classes,
                  f"{name}: {len(ids)} label ids for {masks} masks, want {classes}")
            table = np.array([ids[i] for i in range(len(ids))], dtype=np.int64)
            check(bool(np.all(table[ref_labels] == ref_masks)),
                  f"{name}: reference ids and masks disagree")
            check(bool(np.all(mask == table[label])),
                  f"{name}: query mask is not its label id's mask")
            if k == 1:
                ok = (mask == ref_masks[f_idx[:, 0]]) | tie(rows, index, f_idx[:, 0])
                check(bool(np.all(ok)),
                      f"{name}: {int(np.sum(~ok))} masks differ from faiss's neighbour")
            naive = np.argmax(full, axis=1)  # the naive search: every reference, in float64
            agree = (naive == f_idx[:, 0]) | tie(rows, naive, f_idx[:, 0])
            check(bool(np.all(agree)),
                  f"{name}: naive search and faiss disagree on {int(np.sum(~agree))}")

        # Labels: from faiss's neighbours, by the documented rule.
        if k == 1:
            want = ref_labels[f_idx[:, 0]]
            ok = (label == want) | tie(rows, index, f_idx[:, 0])
        else:
            votes = np.zeros((q.shape[0], classes))
            has = np.zeros((q.shape[0], classes), dtype=bool)
            for j in range(k):
                np.add.at(votes, (rows, ref_labels[f_idx[:, j]]), f_sim[:, j].astype(np.float64))
                has[rows, ref_labels[f_idx[:, j]]] = True
            votes[~has] = -np.inf
            want = np.argmax(votes, axis=1)  # first maximum: the lower label
            top = np.max(votes, axis=1)
            ok = (label == want) | (np.abs(votes[rows, label] - top) <= 1e-5)
        check(bool(np.all(ok)), f"{name}: {int(np.sum(~ok))} labels differ from faiss's neighbours")

        # Margin from the full matrix: best of the chosen label minus the best other label.
        per_label = np.full((q.shape[0], classes), -np.inf)
        for c in range(classes):
            cols = ref_labels == c
            if cols.any():
                per_label[:, c] = full[:, cols].max(axis=1)
        best_own = per_label[rows, label]
        others = per_label.copy()
        others[rows, label] = -np.inf
        want_margin = best_own - others.max(axis=1)
        both_inf = np.isposinf(margin) & np.isposinf(want_margin)  # one label only
        with np.errstate(invalid="ignore"):  # inf - inf where both_inf
            m_err = float(np.max(np.where(both_inf, 0.0, np.abs(margin - want_margin))))
        check(m_err <= 1e-5, f"{name}: margin differs by {m_err}")
        check(float(np.max(np.abs(sim - best_own))) <= 1e-5, f"{name}: similarity is not the label's best")
        print(f"{name}: Q={q.shape[0]} R={r.shape[0]} D={dim} k={k}: index errors {bad_idx}, "
              f"max sim diff {sim_err:.2e}, max margin diff {m_err:.2e}")


def main():
    if not os.path.exists(TOOL):
        check(False, f"{TOOL} is missing (build the tests first)")
    else:
        run_case("cosine k=1")
        run_case("cosine k=1, odd tiles", queries=1001, refs=6002, dim=32, tile="37x501", seed=2)
        run_case("cosine k=1, sgemm threading", queries=800, refs=5000, dim=64,
                 threading="sgemm", tile="300x1000", seed=3)
        run_case("cosine k=5", k=5, tile="64x300", seed=4)
        run_case("dot k=3", k=3, dot=True, classes=3, seed=5)
        run_case("dot k=1, one class", classes=1, dot=True, seed=6)
        run_case("multi-label cosine k=1", classes=12, multilabel=True, seed=7)
        run_case("multi-label cosine k=1, odd tiles", queries=901, refs=3002, dim=24, classes=9,
                 tile="53x409", multilabel=True, seed=8)
        run_case("multi-label dot k=4", k=4, dot=True, classes=6, tile="64x300", multilabel=True,
                 seed=9)
    return report()


if __name__ == "__main__":
    sys.exit(main())
