"""Hostile paths: no name read from a file or a folder listing may make
reflabel read outside the folder it was given. Each attack (a `..` or an
absolute name in a case list or dataset.json, a symbolic link to a file
outside, a symbolic link to a folder outside) must be refused with exactly one
stderr line naming the file and the problem, exit status 1, and no output.
Links that stay inside the folder are legitimate and must keep working (the
controls that show the refusals are not blanket ones)."""
import json
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(__file__))
from clitest import Checks, files_under, main_args, run, scratch  # noqa: E402

EXE = main_args()
T = Checks("cli_test_path_escape")
ROOT = scratch("cli-path-escape")
TRAIN = ["--steps", "2", "--batch", "2", "--depth", "2", "--width", "4", "--quiet",
         "--threads", "1"]

BASE = os.path.join(ROOT, "base")
OUTSIDE = os.path.join(ROOT, "outside")  # files an attacker would like read
rc, _, err = run(EXE, "data", "shapes", "--out", BASE, "--train", "6", "--test", "2",
                 "--size", "32x32")
T.check(rc == 0, f"data shapes failed: {err}")
rc, _, err = run(EXE, "data", "shapes", "--out", OUTSIDE, "--train", "2", "--test", "0",
                 "--size", "32x32", "--seed", "7")
T.check(rc == 0, f"data shapes (outside) failed: {err}")
MODEL = os.path.join(ROOT, "model")
rc, _, err = run(EXE, "train", "--data", BASE, "--out", MODEL, *TRAIN)
T.check(rc == 0, f"train on the clean dataset failed: {err}")
if T.failed:
    sys.exit(T.report())


def fresh(name):
    d = os.path.join(ROOT, name)
    shutil.copytree(BASE, d, symlinks=True)
    return d


def replace_with_link(path, target):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.remove(path)
    os.symlink(target, path)


def expect_refused(what, args, needles, out_dirs):
    """One stderr line containing every needle, exit 1, nothing written."""
    rc, _, err = run(EXE, *args)
    lines = [line for line in err.splitlines() if line.strip()]
    T.check(rc == 1, f"{what}: exit status {rc}, expected 1 ({err.strip()!r})")
    T.check(len(lines) == 1, f"{what}: expected one stderr line, got {lines!r}")
    for needle in needles:
        T.check(needle in err, f"{what}: stderr {err.strip()!r} should mention {needle!r}")
    for d in out_dirs:
        T.check(not os.path.exists(d) or files_under(d) == [],
                f"{what}: output written to {d}: {files_under(d) if os.path.isdir(d) else d}")
        parent = os.path.dirname(d)
        stray = [n for n in os.listdir(parent) if n.startswith("." + os.path.basename(d))]
        T.check(stray == [], f"{what}: temporary left next to {d}: {stray}")


def expect_accepted(what, args):
    rc, _, err = run(EXE, *args)
    T.check(rc == 0, f"{what}: should succeed, got exit {rc}: {err.strip()!r}")


def dataset_commands(name, data):
    """train and pseudolabel on data, each with its own output folders."""
    out = os.path.join(ROOT, name + "-out")
    return [
        (f"train/{name}", ["train", "--data", data, "--out", out + "-train", *TRAIN],
         [out + "-train"]),
        (f"pseudolabel/{name}", ["pseudolabel", "--model", MODEL, "--data", data, "--out",
                                 out + "-pl", "--export-nnunet", out + "-exp", "--labeled", "3",
                                 "--quiet", "--threads", "1"],
         [out + "-pl", out + "-exp"]),
    ]


def attack_dataset(name, mutate, needles):
    d = fresh(name)
    mutate(d)
    for what, args, outs in dataset_commands(name, d):
        expect_refused(what, args, needles, outs)


outside_img = os.path.join(OUTSIDE, "imagesTr", "shapes_000_0000.png")
outside_lab = os.path.join(OUTSIDE, "labelsTr", "shapes_000.png")

# 1. A case file that is a link, with an absolute target outside.
attack_dataset("abs-link",
               lambda d: replace_with_link(os.path.join(d, "imagesTr", "shapes_001_0000.png"),
                                           outside_img),
               ["shapes_001_0000.png", "outside the dataset folder"])
# 2. A link whose relative target climbs out with `..`.
attack_dataset("dotdot-link",
               lambda d: replace_with_link(os.path.join(d, "labelsTr", "shapes_002.png"),
                                           os.path.join("..", "..", "outside", "labelsTr",
                                                        "shapes_000.png")),
               ["shapes_002.png", "outside the dataset folder"])
# 3. A whole subfolder linked out of the tree: its files are plain files.
attack_dataset("linked-subfolder",
               lambda d: replace_with_link(os.path.join(d, "labelsTr"),
                                           os.path.join(OUTSIDE, "labelsTr")),
               ["labelsTr/shapes_000.png", "outside the dataset folder"])
# 4. A new case (imagesTs) linked in from outside: test cases are read too.
attack_dataset("linked-test-case",
               lambda d: os.symlink(outside_img, os.path.join(d, "imagesTs", "zz_0000.png")),
               ["zz_0000.png", "outside the dataset folder"])
# 5. A broken link: refused as unresolvable, not skipped.
attack_dataset("broken-link",
               lambda d: replace_with_link(os.path.join(d, "imagesTr", "shapes_003_0000.png"),
                                           os.path.join(ROOT, "no-such-file.png")),
               ["shapes_003_0000.png", "cannot resolve"])


# 6. dataset.json naming files itself (nnU-Net's "dataset" key), with `..`
#    and absolute paths: refused as a whole, naming dataset.json.
def explicit_file_list(d):
    path = os.path.join(d, "dataset.json")
    with open(path) as f:
        meta = json.load(f)
    meta["dataset"] = {
        "shapes_000": {"images": [outside_img], "label": "../outside/labelsTr/shapes_000.png"},
        "shapes_001": {"images": ["../../etc/passwd"], "label": "/etc/passwd"},
    }
    with open(path, "w") as f:
        json.dump(meta, f)


attack_dataset("json-file-list", explicit_file_list, ["dataset.json", "\"dataset\""])

# 7. Case lists (--labeled FILE): `..`, absolute and nested names are ids,
#    never paths: any name that is not a training case is refused.
for i, bad in enumerate(["../outside/labelsTr/shapes_000", "/etc/passwd",
                         "shapes_000/../shapes_001", outside_lab]):
    ids = os.path.join(ROOT, f"ids-{i}.txt")
    with open(ids, "w") as f:
        f.write(f"shapes_000\n{bad}\n")
    out = os.path.join(ROOT, f"ids-{i}-out")
    expect_refused(f"train/--labeled list {bad!r}",
                   ["train", "--data", BASE, "--out", out + "-train", "--labeled", ids, *TRAIN],
                   [ids, "not among the training cases"], [out + "-train"])
    expect_refused(f"pseudolabel/--labeled list {bad!r}",
                   ["pseudolabel", "--model", MODEL, "--data", BASE, "--out", out + "-pl",
                    "--labeled", ids, "--quiet", "--threads", "1"],
                   [ids, "not among the training cases"], [out + "-pl"])

# 8. --refs: the reference dataset obeys the same rules.
refs = fresh("refs-link")
replace_with_link(os.path.join(refs, "labelsTr", "shapes_004.png"), outside_lab)
out = os.path.join(ROOT, "refs-link-out")
expect_refused("pseudolabel/--refs with a link out",
               ["pseudolabel", "--model", MODEL, "--data", BASE, "--refs", refs, "--out", out,
                "--labeled", "3", "--quiet", "--threads", "1"],
               ["shapes_004.png", "outside the dataset folder"], [out])

# 9. Plain folders of predict and evaluate: links out are refused too.
pred_in = os.path.join(ROOT, "predict-in")
shutil.copytree(os.path.join(BASE, "imagesTs"), pred_in)
os.symlink(outside_img, os.path.join(pred_in, "zz_0000.png"))
out = os.path.join(ROOT, "predict-out")
expect_refused("predict/link out of --in",
               ["predict", "--model", MODEL, "--in", pred_in, "--out", out, "--quiet",
                "--threads", "1"],
               ["zz_0000.png", "outside its folder"], [out])
pred_in2 = os.path.join(ROOT, "predict-in-dotdot")
shutil.copytree(os.path.join(BASE, "imagesTs"), pred_in2)
replace_with_link(os.path.join(pred_in2, "shapes_006_0000.png"),
                  os.path.join("..", "outside", "imagesTr", "shapes_000_0000.png"))
expect_refused("predict/`..` link in --in",
               ["predict", "--model", MODEL, "--in", pred_in2, "--out", out, "--quiet",
                "--threads", "1"],
               ["shapes_006_0000.png", "outside its folder"], [out])

gt = os.path.join(ROOT, "gt")
shutil.copytree(os.path.join(BASE, "labelsTs"), gt)
pred = os.path.join(ROOT, "pred")
shutil.copytree(os.path.join(BASE, "labelsTs"), pred)
replace_with_link(os.path.join(pred, "shapes_007.png"), outside_lab)
report = os.path.join(ROOT, "eval", "report.json")
expect_refused("evaluate/link out of --pred",
               ["evaluate", "--pred", pred, "--gt", gt, "--json", report],
               ["shapes_007.png", "outside its folder"], [os.path.dirname(report)])
T.check(not os.path.exists(os.path.join(pred, "summary.json")), "evaluate wrote a summary")
gt_linked = os.path.join(ROOT, "gt-linked")
os.makedirs(gt_linked)
os.symlink(outside_lab, os.path.join(gt_linked, "shapes_000.png"))
expect_refused("evaluate/link out of --gt",
               ["evaluate", "--pred", gt, "--gt", gt_linked, "--json", report],
               ["shapes_000.png", "outside its folder"], [os.path.dirname(report)])

# Controls: links that stay inside are fine, and so is a dataset folder that
# is itself a link (the tree is judged after resolving it).
inside = fresh("inside-links")
replace_with_link(os.path.join(inside, "labelsTr", "shapes_005.png"), "shapes_004.png")
os.rename(os.path.join(inside, "imagesTs"), os.path.join(inside, "test-images"))
os.symlink("test-images", os.path.join(inside, "imagesTs"))
for what, args, _ in dataset_commands("inside-links", inside):
    expect_accepted(what + " (control)", args)
linked_root = os.path.join(ROOT, "linked-root")
os.symlink(BASE, linked_root)
expect_accepted("pseudolabel/dataset folder that is a link (control)",
                ["pseudolabel", "--model", MODEL, "--data", linked_root, "--out",
                 os.path.join(ROOT, "linked-root-pl"), "--labeled", "3", "--quiet",
                 "--threads", "1"])
pred_ok = os.path.join(ROOT, "predict-in-ok")
shutil.copytree(os.path.join(BASE, "imagesTs"), pred_ok)
os.symlink("shapes_006_0000.png", os.path.join(pred_ok, "copy_0000.png"))
expect_accepted("predict/link inside --in (control)",
                ["predict", "--model", MODEL, "--in", pred_ok, "--out",
                 os.path.join(ROOT, "predict-ok-out"), "--quiet", "--threads", "1"])
T.check(os.path.exists(os.path.join(ROOT, "predict-ok-out", "copy.png")),
        "predict did not segment the linked case")

sys.exit(T.report())
