"""Times faiss IndexFlatIP (k=1) and a naive numpy full-similarity version on the
inputs `reflabel bench match --write-inputs DIR` wrote, checks that both return
the references reflabel returned, and prints one JSON line.

usage: bench_match_faiss.py DIR [--threads T] [--naive-bytes B]

DIR holds queries.npy (Q, D) raw, refs.npy (R, D) L2-normalised in bank order,
ref_labels.npy (R,), and reflabel's answer index.npy, label.npy,
similarity.npy (Q,). Queries are L2-normalised here, so inner product = cosine.

The naive version materialises the (Q', R) similarity matrix; it runs on the
first Q' queries such that Q' * R * 4 bytes <= --naive-bytes (default 1 GiB),
and reports its time extrapolated to all Q queries.

An index may differ from faiss only where the two similarities are equal
within 1e-6 (a tie, computed in float64); similarities must agree within 1e-5.
"""
import argparse
import json
import os
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--naive-bytes", type=float, default=float(1 << 30))
    args = ap.parse_args()
    # numpy's BLAS reads its thread count when it is loaded.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    import numpy as np
    import faiss

    d = args.dir
    queries = np.load(os.path.join(d, "queries.npy")).astype(np.float32)
    refs = np.ascontiguousarray(np.load(os.path.join(d, "refs.npy")).astype(np.float32))
    ref_labels = np.load(os.path.join(d, "ref_labels.npy"))
    ours_index = np.load(os.path.join(d, "index.npy")).astype(np.int64)
    ours_label = np.load(os.path.join(d, "label.npy"))
    ours_sim = np.load(os.path.join(d, "similarity.npy"))
    nq, dim = queries.shape
    nr = refs.shape[0]
    norms = np.linalg.norm(queries.astype(np.float64), axis=1, keepdims=True)
    qn = np.ascontiguousarray((queries / np.where(norms > 0, norms, 1)).astype(np.float32))

    def compare(index, sim, rows):
        """Mismatches and ties of (index, sim) against ours on the given rows."""
        o_idx = ours_index[rows]
        diff = np.nonzero(o_idx != index)[0]
        q64 = qn[rows][diff].astype(np.float64)
        s_ours = np.einsum("ij,ij->i", q64, refs[o_idx[diff]].astype(np.float64))
        s_them = np.einsum("ij,ij->i", q64, refs[index[diff]].astype(np.float64))
        tie = np.zeros(len(rows), dtype=bool)
        tie[diff[np.abs(s_ours - s_them) <= 1e-6]] = True
        ties = int(tie.sum())
        label_bad = int(np.sum((ours_label[rows] != ref_labels[index]) & ~tie))
        return {
            "index_mismatches": int(diff.size) - ties,
            "ties": ties,
            "label_mismatches": label_bad,
            "max_sim_diff": float(np.max(np.abs(ours_sim[rows] - sim))) if len(rows) else 0.0,
        }

    faiss.omp_set_num_threads(args.threads)
    index = faiss.IndexFlatIP(dim)
    index.add(refs)
    t0 = time.perf_counter()
    f_sim, f_idx = index.search(qn, 1)
    f_seconds = time.perf_counter() - t0
    result = {"faiss_version": faiss.__version__, "threads": args.threads,
              "faiss_seconds": f_seconds,
              "faiss_gflops": 2.0 * nq * nr * dim / f_seconds * 1e-9}
    result.update({"faiss_" + k: v for k, v in compare(f_idx[:, 0], f_sim[:, 0], np.arange(nq)).items()})

    nq_naive = int(min(nq, args.naive_bytes // (4 * nr)))
    if nq_naive >= 1:
        rows = np.arange(nq_naive)
        t0 = time.perf_counter()
        sims = qn[:nq_naive] @ refs.T  # the full (Q', R) matrix
        n_idx = np.argmax(sims, axis=1)
        n_sim = sims[rows, n_idx]
        n_seconds = time.perf_counter() - t0
        del sims
        naive = {"queries": nq_naive, "seconds": n_seconds,
                 "extrapolated_seconds": n_seconds * nq / nq_naive,
                 "matrix_bytes_full": 4 * nq * nr}
        naive.update(compare(n_idx, n_sim, rows))
        result["naive_numpy"] = naive
    else:
        result["naive_numpy"] = {"skipped": "one row of the similarity matrix exceeds --naive-bytes"}

    ok = (result["faiss_index_mismatches"] == 0 and result["faiss_label_mismatches"] == 0
          and result["faiss_max_sim_diff"] <= 1e-5)
    if "queries" in result["naive_numpy"]:
        nn = result["naive_numpy"]
        ok = ok and nn["index_mismatches"] == 0 and nn["max_sim_diff"] <= 1e-5
    result["identical"] = bool(ok)
    print(json.dumps(result))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
