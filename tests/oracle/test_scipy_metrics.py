"""Oracle for src/eval/metrics.c: Dice, IoU, HD95, ASSD and their aggregation
against an independent scipy/numpy implementation of MONAI's definitions.

Usage: /usr/bin/python3 test_scipy_metrics.py BUILD_DIR

Random blobby 2D and 3D label maps (several classes, random anisotropic
spacing, some classes emptied in the prediction, the reference or both, some
cases with ignored regions) go to BUILD_DIR/tests/tool_metrics as .npy; its
results must match the reference computed here:
  - surface of M  = M ^ scipy.ndimage.binary_erosion(M)  (face-connected
    cross, border_value=0), as monai.metrics.utils.get_mask_edges;
  - d(A->B)       = distance_transform_edt(~surface(B), sampling)[surface(A)],
    as monai.metrics.utils.get_surface_distance;
  - HD95          = max(percentile(d(P->G), 95), percentile(d(G->P), 95));
  - ASSD          = mean(concatenate(d(P->G), d(G->P))).
Tolerances: Dice/IoU to 1e-9 absolute, distances to 1e-6 relative, each
element (stricter than a relative L2 over the whole table); counts, flags and
NaN positions exactly. The script fails (not skips) without numpy/scipy.
"""
import os
import subprocess
import sys
import tempfile

import numpy as np
from scipy import ndimage

from oracle_checks import check, report

GT_EMPTY, PRED_EMPTY = 1, 2
IGNORE = 255



# ---- reference ------------------------------------------------------------

def surface(mask):
    return mask ^ ndimage.binary_erosion(mask)


def directed(from_edges, to_edges, sampling):
    return ndimage.distance_transform_edt(~to_edges, sampling=sampling)[from_edges]


def reference_case(pred, gt, spacing_xyz, num_classes, ignore):
    """Rows of (dice, iou, hd95, assd, gt, pred, intersection, flags)."""
    sampling = tuple(spacing_xyz[::-1][3 - pred.ndim:])  # numpy axes are (z,) y, x
    valid = np.ones(pred.shape, bool)
    if ignore is not None:
        valid = (pred != ignore) & (gt != ignore)
    rows = []
    for c in range(num_classes):
        p = (pred == c) & valid
        g = (gt == c) & valid
        n_p, n_g, n_pg = int(p.sum()), int(g.sum()), int((p & g).sum())
        flags = (GT_EMPTY if n_g == 0 else 0) | (PRED_EMPTY if n_p == 0 else 0)
        if n_p == 0 and n_g == 0:
            dice = iou = 1.0
            hd95 = assd = 0.0
        else:
            dice = 2.0 * n_pg / (n_p + n_g)
            iou = n_pg / (n_p + n_g - n_pg)
            if n_p == 0 or n_g == 0:
                hd95 = assd = np.nan
            else:
                ep, eg = surface(p), surface(g)
                d_pg = directed(ep, eg, sampling)
                d_gp = directed(eg, ep, sampling)
                hd95 = max(np.percentile(d_pg, 95), np.percentile(d_gp, 95))
                assd = np.concatenate([d_pg, d_gp]).mean()
        rows.append([dice, iou, hd95, assd, n_g, n_p, n_pg, flags])
    return np.array(rows, dtype=np.float64)


def reference_summary(tables):
    """(K + 1, 20) like tool_metrics' summary.npy."""
    stack = np.stack(tables)  # (cases, K, 8)
    num_classes = stack.shape[1]

    def stats(v):
        ok = ~np.isnan(v)
        if not ok.any():
            return [np.nan, np.nan, 0, int((~ok).sum())]
        return [v[ok].mean(), v[ok].std(), int(ok.sum()), int((~ok).sum())]

    def counts(flags):
        g = (flags & GT_EMPTY) != 0
        p = (flags & PRED_EMPTY) != 0
        return [int((g & ~p).sum()), int((p & ~g).sum()), int((g & p).sum())]

    out = []
    for c in range(num_classes):
        row = []
        for m in range(4):
            row += stats(stack[:, c, m])
        flags = stack[:, c, 7].astype(int)
        out.append(row + [stack.shape[0]] + counts(flags))
    fg = []
    for m in range(4):
        means = np.array([out[c][4 * m] if out[c][4 * m + 2] > 0 else np.nan
                          for c in range(1, num_classes)])
        fg += stats(means)
    fg_counts = np.sum([out[c][17:20] for c in range(1, num_classes)], axis=0).tolist()
    out.append(fg + [stack.shape[0]] + fg_counts)
    return np.array(out, dtype=np.float64)


# ---- random cases -----------------------------------------------------------

def blobs(rng, shape, num_classes, sigma):
    """Smooth random fields, one per foreground class; the strongest wins
    where it is above a threshold, background elsewhere."""
    fields = ndimage.gaussian_filter(rng.standard_normal((num_classes - 1,) + shape),
                                     sigma=(0,) + sigma)
    fields /= fields.std() + 1e-12
    labels = fields.argmax(axis=0).astype(np.int32) + 1
    labels[fields.max(axis=0) < 0.6] = 0
    return labels, fields


def make_case(rng, ndim, num_classes, with_ignore):
    if ndim == 2:
        shape = (int(rng.integers(30, 70)), int(rng.integers(30, 70)))
    else:
        shape = (int(rng.integers(8, 20)), int(rng.integers(20, 36)), int(rng.integers(20, 36)))
    sigma = tuple(float(s) for s in rng.uniform(1.5, 3.5, size=ndim))
    gt, fields = blobs(rng, shape, num_classes, sigma)
    # The prediction: the same fields plus smooth noise, so boundaries move
    # by a few voxels and small blobs appear or vanish.
    noise = ndimage.gaussian_filter(rng.standard_normal(fields.shape), sigma=(0,) + sigma)
    noisy = fields + 0.6 * noise / (noise.std() + 1e-12)
    pred = noisy.argmax(axis=0).astype(np.int32) + 1
    pred[noisy.max(axis=0) < 0.6] = 0
    # Empty classes: one in the reference, one in the prediction, now and then.
    roll = rng.random()
    c = int(rng.integers(1, num_classes))
    if roll < 0.25:
        gt[gt == c] = 0
    elif roll < 0.5:
        pred[pred == c] = 0
    elif roll < 0.6:
        gt[gt == c] = 0
        pred[pred == c] = 0
    if with_ignore:
        region = np.zeros(shape, bool)
        sl = tuple(slice(int(rng.integers(0, s // 2)), int(rng.integers(s // 2, s))) for s in shape)
        region[sl] = True
        region &= rng.random(shape) < 0.7
        gt[region] = IGNORE
        pred[rng.random(shape) < 0.01] = IGNORE
    spacing = rng.uniform(0.4, 3.0, size=3)
    if ndim == 2:
        spacing[2] = 1.0
    return pred, gt, spacing


def run_tool(tool, case_dir, num_cases, num_classes, ignore, out_dir):
    return subprocess.run([tool, case_dir, str(num_cases), str(num_classes),
                           "none" if ignore is None else str(ignore), out_dir],
                          capture_output=True, text=True, timeout=120)


def compare(name, got, want):
    check(got.shape == want.shape, f"{name}: shape {got.shape} vs {want.shape}")
    if got.shape != want.shape:
        return
    nan_same = np.array_equal(np.isnan(got), np.isnan(want))
    check(nan_same, f"{name}: NaN positions differ\n got {got}\nwant {want}")
    ok = ~np.isnan(want) & ~np.isnan(got)
    return ok


def compare_case(name, got, want):
    ok = compare(name, got, want)
    if ok is None:
        return
    overlap = np.abs(got[:, :2] - want[:, :2])[ok[:, :2]]
    check(overlap.size == 0 or overlap.max() <= 1e-9,
          f"{name}: Dice/IoU off by {overlap.max() if overlap.size else 0}")
    g, w = got[:, 2:4][ok[:, 2:4]], want[:, 2:4][ok[:, 2:4]]
    rel = np.abs(g - w) / np.maximum(np.abs(w), 1e-12)
    rel[np.abs(g - w) <= 1e-12] = 0.0
    check(rel.size == 0 or rel.max() <= 1e-6,
          f"{name}: HD95/ASSD relative error {rel.max() if rel.size else 0}\n got {got[:, 2:4]}\nwant {want[:, 2:4]}")
    check(np.array_equal(got[:, 4:], want[:, 4:]), f"{name}: counts/flags {got[:, 4:]} vs {want[:, 4:]}")


def compare_summary(name, got, want):
    ok = compare(name, got, want)
    if ok is None:
        return
    diff = np.abs(got - want)[ok] / np.maximum(np.abs(want[ok]), 1.0)
    check(diff.max() <= 1e-9, f"{name}: summary off by {diff.max()}\n got {got}\nwant {want}")


def suite(tool, root, rng, name, specs, num_classes, ignore):
    case_dir = os.path.join(root, name)
    out_dir = os.path.join(root, name + "_out")
    os.makedirs(case_dir)
    os.makedirs(out_dir)
    wants = []
    for i, ndim in enumerate(specs):
        pred, gt, spacing = make_case(rng, ndim, num_classes, ignore is not None)
        np.save(os.path.join(case_dir, f"case{i}_pred.npy"), pred)
        np.save(os.path.join(case_dir, f"case{i}_gt.npy"), gt)
        np.save(os.path.join(case_dir, f"case{i}_spacing.npy"), spacing)
        wants.append(reference_case(pred, gt, spacing, num_classes, ignore))
    res = run_tool(tool, case_dir, len(specs), num_classes, ignore, out_dir)
    check(res.returncode == 0, f"{name}: tool failed: {res.stderr.strip()}")
    if res.returncode != 0:
        return
    empties = 0
    for i, want in enumerate(wants):
        got = np.load(os.path.join(out_dir, f"case{i}_metrics.npy"))
        compare_case(f"{name} case {i} ({specs[i]}D)", got, want)
        empties += int(np.isnan(want[:, 2]).sum())
    # The suite must exercise the empty rules, or the NaN checks prove nothing.
    check(empties > 0, f"{name}: no case with exactly one empty mask")
    compare_summary(f"{name} summary", np.load(os.path.join(out_dir, "summary.npy")),
                    reference_summary(wants))


def error_cases(tool, root):
    """Shape mismatch and an out-of-range label must fail cleanly."""
    case_dir = os.path.join(root, "errors")
    os.makedirs(case_dir)
    np.save(os.path.join(case_dir, "case0_pred.npy"), np.zeros((5, 6), np.int32))
    np.save(os.path.join(case_dir, "case0_gt.npy"), np.zeros((6, 5), np.int32))
    np.save(os.path.join(case_dir, "case0_spacing.npy"), np.ones(3))
    res = run_tool(tool, case_dir, 1, 2, None, case_dir)
    check(res.returncode == 1 and "shape mismatch" in res.stderr,
          f"shape mismatch: rc {res.returncode} stderr {res.stderr!r}")
    gt = np.zeros((5, 6), np.int32)
    gt[2, 3] = 7
    np.save(os.path.join(case_dir, "case0_gt.npy"), gt)
    res = run_tool(tool, case_dir, 1, 2, None, case_dir)
    check(res.returncode == 1 and "outside [0, 2)" in res.stderr,
          f"out-of-range label: rc {res.returncode} stderr {res.stderr!r}")


def main():
    build = sys.argv[1] if len(sys.argv) > 1 else "build"
    tool = os.path.join(build, "tests", "tool_metrics")
    if not os.path.exists(tool):
        print(f"FAIL: {tool} not built")
        print("0 passed, 1 failed")
        return 1
    tmp_root = os.environ.get("RL_TEST_TMP") or None
    if tmp_root:
        os.makedirs(tmp_root, exist_ok=True)
    rng = np.random.default_rng(20240611)
    with tempfile.TemporaryDirectory(dir=tmp_root) as root:
        suite(tool, root, rng, "plain", [2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3], 4, None)
        suite(tool, root, rng, "ignore", [2, 2, 2, 3, 3, 3], 3, IGNORE)
        error_cases(tool, root)
    return report()


if __name__ == "__main__":
    sys.exit(main())
