"""End-to-end runs of `reflabel demo` with its hidden 'smoke' preset (a
two-step training of a tiny U-Net), so that the whole pipeline and the
report are checked in seconds:

- the labeled slices are 5% of the training slices, evenly spaced, and the
  pseudo-labels are scored on exactly the others;
- report.html links only to files inside the report folder, and all exist;
- every overlay PNG decodes (Pillow) at the slice size times the panel
  scale, front of the head up; the image panel is the gray slice, and each
  label panel holds exactly the gray pixel where the label is background
  and the documented blend of the gray pixel with the legend's colour of
  the class elsewhere (labels read with nibabel, never with our readers);
- the SVG charts parse as XML and hold polylines inside their frame;
- the Dice table and the headline equal the evaluate JSON files, and each
  overlay row's Dice equals a NumPy recomputation from the label files;
- a second run reuses the dataset (files untouched) and rewrites the report.

Without /usr/share/mricron/templates (Debian's mricron-data) only the error
path is checked: one line naming the package, exit status 1."""
import json
import os
import re
import shlex
import shutil
import sys
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import nibabel as nib
import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(__file__))
from clitest import Checks, main_args, run, scratch  # noqa: E402

EXE = main_args()
T = Checks("cli_test_demo")
ROOT = scratch("cli-demo")
# characters that HTML and the shell treat specially: the report must escape
# them, and the command lines it lists must quote them
OUT = os.path.join(ROOT, "demo <a&b> 'q\"")
DEMO = ["demo", "--out", OUT, "--preset", "smoke", "--threads", "1"]
ATLAS = "/usr/share/mricron/templates"
SCALE = 3     # REPORT_PANEL_SCALE in src/cli/report.h
WEIGHT = 144  # REPORT_OVERLAY_WEIGHT


class Page(HTMLParser):
    """The links, legend, overlay rows and Dice table of report.html."""

    def __init__(self):
        super().__init__()
        self.links, self.legend, self.rows, self.cells = [], [], [], {}
        self.ids = {}
        self.scripts = 0
        self.pre = ""
        self._in_pre = False
        self._legend_color = None
        self._row = None
        self._cell = None
        self._id = None
        self._code = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for key in ("src", "href"):
            if key in a:
                self.links.append(a[key])
        if tag == "script":
            self.scripts += 1
        if tag == "pre":
            self._in_pre = True
        if tag == "span" and a.get("class") == "swatch" and self._row is None:
            self._legend_color = re.search(r"#([0-9a-f]{6})", a["style"]).group(1)
        if tag == "tr" and "data-class" in a:
            self._row = a["data-class"]
        if tag == "td" and "data-metric" in a:
            self._cell = (self._row, a["data-metric"])
            self.cells[self._cell] = ""
        if tag == "img" and a.get("src", "").startswith("png/"):
            self.rows[-1]["panels"].append(a["src"])
        if tag == "code" and self._row is None:
            self._code = True
        if "id" in a:
            self._id = a["id"]
            self.ids[self._id] = ""

    def handle_endtag(self, tag):
        if tag == "tr":
            self._row = None
        if tag == "td":
            self._cell = None
        if tag == "code":
            self._code = False
        if tag == "pre":
            self._in_pre = False
        if tag in ("b", "table"):
            self._id = None

    def handle_data(self, data):
        if self._in_pre:
            self.pre += data
        if self._legend_color is not None:
            self.legend.append((data.strip(), self._legend_color))
            self._legend_color = None
        if self._cell is not None:
            self.cells[self._cell] += data
        if self._id is not None:
            self.ids[self._id] += data
        if self._code and re.fullmatch(r"atlas_z\d{3}", data):
            self.rows.append({"case": data, "panels": [], "dice": None})
        m = re.search(r"mean foreground Dice (\S+)", data)
        if m and self.rows and self.rows[-1]["dice"] is None:
            self.rows[-1]["dice"] = m.group(1)


def check_missing_atlas():
    rc, out, err = run(EXE, *DEMO)
    lines = err.strip().splitlines()
    T.check(rc == 1, f"without {ATLAS}: exit {rc}")
    T.check(len(lines) == 1 and "mricron-data" in lines[0],
            f"without {ATLAS}: one line naming mricron-data expected: {err!r}")


def case_files(kind, case):
    """(image, expert label, other label) paths of a pseudo or test row."""
    data = os.path.join(OUT, "data")
    if kind == "pseudo":
        return (os.path.join(data, "imagesTr", case + "_0000.nii.gz"),
                os.path.join(data, "labelsTr", case + ".nii.gz"),
                os.path.join(OUT, "pseudolabels", case + ".nii.gz"))
    return (os.path.join(data, "imagesTs", case + "_0000.nii.gz"),
            os.path.join(data, "labelsTs", case + ".nii.gz"),
            os.path.join(OUT, "run", "test_predictions", case + ".nii.gz"))


def as_panel(slice2d):
    """(nx, ny) NIfTI slice -> panel layout: rows = y reversed, enlarged."""
    rows = slice2d.T[::-1, :]
    return np.repeat(np.repeat(rows, SCALE, axis=0), SCALE, axis=1)


def foreground_dice(pred, gt, k):
    scores = []
    for c in range(1, k):
        p, g = pred == c, gt == c
        total = p.sum() + g.sum()
        scores.append(1.0 if total == 0 else 2.0 * np.logical_and(p, g).sum() / total)
    return float(np.mean(scores))


def check_row(row, kind, colors, k):
    image_path, expert_path, other_path = case_files(kind, row["case"])
    image = np.asarray(nib.load(image_path).dataobj, dtype=np.float32)[:, :, 0]
    expert = np.asarray(nib.load(expert_path).dataobj).astype(np.int64)[:, :, 0]
    other = np.asarray(nib.load(other_path).dataobj).astype(np.int64)[:, :, 0]
    nx, ny = image.shape
    other_name = "pseudolabel" if kind == "pseudo" else "prediction"
    want = [f"png/{kind}{row['index']}_{p}.png" for p in ("image", "expert", other_name)]
    T.check(row["panels"] == want, f"{row['case']}: panels {row['panels']} != {want}")
    panels = []
    for src in row["panels"]:
        img = Image.open(os.path.join(OUT, "report", src))
        T.check(img.mode == "RGB" and img.size == (nx * SCALE, ny * SCALE),
                f"{src}: {img.mode} {img.size}, expected RGB {(nx * SCALE, ny * SCALE)}")
        panels.append(np.asarray(img.convert("RGB")).astype(np.int64))
    gray = panels[0][:, :, 0]
    T.check(all(np.array_equal(panels[0][:, :, c], gray) for c in (1, 2)),
            f"{row['panels'][0]}: not gray")
    # the gray window: 0.5th and 99.5th percentile of the slice (report.c)
    flat = np.sort(image.ravel())
    lo, hi = flat[int(0.005 * (flat.size - 1))], flat[int(0.995 * (flat.size - 1))]
    v = np.clip((as_panel(image) - lo) / np.float32(hi - lo), 0, 1)
    expect_gray = np.rint(np.float32(255) * v.astype(np.float32))
    T.check(np.abs(expect_gray - gray).max() <= 1,
            f"{row['panels'][0]}: gray differs from the windowed slice by "
            f"{np.abs(expect_gray - gray).max()}")
    for labels, panel, src in ((expert, panels[1], row["panels"][1]),
                               (other, panels[2], row["panels"][2])):
        lab = as_panel(labels)
        expect = np.repeat(gray[:, :, None], 3, axis=2)
        for c in np.unique(lab):
            if c == 0:
                continue
            rgb = np.array([int(colors[c][i:i + 2], 16) for i in (0, 2, 4)])
            m = lab == c
            expect[m] = (gray[m][:, None] * (256 - WEIGHT) + rgb * WEIGHT + 128) >> 8
        T.check(np.array_equal(panel, expect),
                f"{src}: {np.count_nonzero((panel != expect).any(axis=2))} pixels differ from "
                "the gray image blended with the legend colours of the labels")
    T.check(row["dice"] == f"{foreground_dice(other, expert, k):.3f}",
            f"{row['case']}: row Dice {row['dice']} != "
            f"NumPy {foreground_dice(other, expert, k):.3f}")


def number_cell(text):
    text = text.strip()
    if text == "n/a":
        return None, None
    mean, std = text.split("\u00b1")
    return float(mean), float(std)


def check_table(page, classes, pseudo_eval, test_eval):
    for key, ev, metric, tol in (("pseudo_dice", pseudo_eval, "dice", 5e-5),
                                 ("pseudo_hd95", pseudo_eval, "hd95_mm", 5e-3),
                                 ("test_dice", test_eval, "dice", 5e-5),
                                 ("test_hd95", test_eval, "hd95_mm", 5e-3)):
        for cls in classes + ["foreground_mean"]:
            stats = (ev["foreground_mean"] if cls == "foreground_mean"
                     else ev["per_class"][cls])[metric]
            cell = page.cells.get((cls, key))
            T.check(cell is not None, f"Dice table: no cell {key} for {cls}")
            if cell is None:
                continue
            mean, std = number_cell(cell)
            if stats["mean"] is None:
                T.check(mean is None, f"{cls} {key}: {cell!r}, JSON mean is null")
            else:
                T.check(mean is not None and abs(mean - stats["mean"]) <= tol and
                        abs(std - stats["std"]) <= tol,
                        f"{cls} {key}: table {cell!r} vs JSON {stats['mean']} ± {stats['std']}")
    for name, ev in (("pseudo-dice", pseudo_eval), ("test-dice", test_eval)):
        T.check(abs(float(page.ids.get(name, "nan")) - ev["foreground_mean"]["dice"]["mean"])
                <= 5e-5, f"headline {name} {page.ids.get(name)!r}")


def check_svg(path):
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        T.check(False, f"{path}: not XML: {e}")
        return
    ns = "{http://www.w3.org/2000/svg}"
    T.check(root.tag == ns + "svg", f"{path}: root {root.tag}")
    width, height = float(root.get("width")), float(root.get("height"))
    lines = root.iter(ns + "polyline")
    count = 0
    for line in lines:
        count += 1
        pts = np.array([[float(v) for v in p.split(",")] for p in line.get("points").split()])
        T.check(len(pts) > 0 and (pts >= 0).all() and (pts[:, 0] <= width).all() and
                (pts[:, 1] <= height).all(), f"{path}: polyline outside the chart")
    T.check(count >= 3, f"{path}: {count} polylines, expected one per series")
    texts = [t.text for t in root.iter(ns + "text")]
    T.check(len(texts) >= 8, f"{path}: {len(texts)} texts (title, tick labels, legend expected)")


def check_split(ds):
    """5% of the training slices keep their label, evenly spaced; the
    pseudo-labels are scored on exactly the others."""
    images = os.listdir(os.path.join(OUT, "data", "imagesTr"))
    train = sorted(f[:-len("_0000.nii.gz")] for f in images)
    n = len(train)
    k = max(1, round(0.05 * n))
    with open(os.path.join(OUT, "run", "labeled.txt")) as f:
        labeled = f.read().split()
    T.check(labeled == [train[int((i + 0.5) * n / k)] for i in range(k)],
            f"labeled.txt {labeled}: not {k} evenly spaced of {n}")
    with open(os.path.join(OUT, "pseudolabels_eval.json")) as f:
        pseudo_eval = json.load(f)
    T.check(sorted(pseudo_eval["per_case"]) == sorted(set(train) - set(labeled)),
            "pseudo-labels are not scored on exactly the unlabeled slices")
    T.check(n == ds["numTraining"], f"{n} training slices, dataset.json says {ds['numTraining']}")
    return pseudo_eval


def check_report():
    report = os.path.join(OUT, "report")
    with open(os.path.join(OUT, "data", "dataset.json")) as f:
        ds = json.load(f)
    classes = [name for name, _ in sorted(ds["labels"].items(), key=lambda kv: kv[1])]
    pseudo_eval = check_split(ds)
    with open(os.path.join(OUT, "run", "test_metrics.json")) as f:
        test_eval = json.load(f)
    with open(os.path.join(report, "report.html"), encoding="utf-8") as f:
        html = f.read()
    page = Page()
    page.feed(html)
    T.check(page.scripts == 0, "report.html holds <script>")
    T.check(len(page.links) >= 20, f"only {len(page.links)} links")
    for link in page.links:
        inside = not re.match(r"^[a-z]+:", link) and not link.startswith("/") and \
            ".." not in link.split("/")
        T.check(inside and os.path.isfile(os.path.join(report, link)),
                f"report.html links to {link!r}: not a file inside the report folder")
    T.check([name for name, _ in page.legend] == classes[1:],
            f"legend {page.legend} does not name the classes {classes[1:]}")
    colors = {classes.index(name): color for name, color in page.legend}
    T.check(len(set(colors.values())) == len(colors), "two classes share a colour")
    kinds = ["pseudo"] * 4 + ["test"] * 4
    T.check(len(page.rows) == 8, f"{len(page.rows)} overlay rows, expected 4 + 4")
    for i, row in enumerate(page.rows[:8]):
        row["index"] = i % 4 + 1
        check_row(row, kinds[i], colors, len(classes))
    check_table(page, classes, pseudo_eval, test_eval)
    for svg in ("loss.svg", "pseudolabels.svg"):
        T.check(svg in page.links, f"{svg} not linked")
        check_svg(os.path.join(report, svg))
    overview = Image.open(os.path.join(report, "overview.png"))
    T.check(overview.mode == "RGB" and overview.size[0] > 3 * SCALE * 64,
            f"overview.png {overview.mode} {overview.size}")
    T.check(OUT not in html, "the output path appears unescaped in report.html")
    commands = {line.split()[1]: shlex.split(line) for line in page.pre.splitlines()
                if line.startswith("reflabel ")}
    T.check(sorted(commands) == ["data", "evaluate", "pseudolabel", "train"],
            f"commands listed: {sorted(commands)}")
    train = commands.get("train", [])
    T.check(train[train.index("--data") + 1] == os.path.join(OUT, "data") if "--data" in train
            else False, f"the train command line does not quote the path: {train}")
    T.check(train[train.index("--labeled") + 1] == "0.05" if "--labeled" in train else False,
            f"the train command line does not hide 95% of the labels: {train}")


def main():
    if not os.path.isfile(os.path.join(ATLAS, "ch2.nii.gz")):
        check_missing_atlas()
        return T.report()
    rc, out, err = run(EXE, *DEMO)
    T.check(rc == 0, f"demo: exit {rc}: {err.strip()[-2000:]}")
    T.check("[1/5] reflabel data atlas" in err, "the first run does not build the dataset")
    T.check(f"report: {OUT}/report/report.html" in out, f"no report path in {out[-500:]!r}")
    if rc != 0:
        return T.report()
    check_report()

    data = os.path.join(OUT, "data")
    first_image = os.path.join("imagesTr", sorted(os.listdir(os.path.join(data, "imagesTr")))[0])
    stamps = {f: os.stat(os.path.join(data, f)).st_mtime_ns for f in ("dataset.json", first_image)}
    os.remove(os.path.join(OUT, "report", "report.html"))
    rc, out, err = run(EXE, *DEMO)
    T.check(rc == 0, f"second demo: exit {rc}: {err.strip()[-2000:]}")
    T.check("reusing the dataset" in err and "] reflabel data atlas" not in err and "[1/4]" in err,
            "the second run does not reuse the dataset")
    T.check(all(os.stat(os.path.join(data, f)).st_mtime_ns == t for f, t in stamps.items()),
            "the second run rewrote the dataset")
    T.check(os.path.isfile(os.path.join(OUT, "report", "report.html")),
            "no report after the second run")

    for bad in (["--preset", "nope"], ["--bogus"], ["--threads", "x"], ["--out"]):
        rc, out, err = run(EXE, "demo", *bad)
        T.check(rc == 2 and len(err.strip().splitlines()) == 1 and "reflabel demo: " in err,
                f"demo {bad}: exit {rc}, {err!r}")
    # a step that fails stops the demo with that step's error line, exit 1
    blocker = os.path.join(ROOT, "a-file")
    open(blocker, "w").close()
    rc, out, err = run(EXE, "demo", "--out", blocker, "--preset", "smoke", "--threads", "1")
    T.check(rc == 1 and err.strip().splitlines()[-1].startswith("reflabel: ") and
            os.path.isfile(blocker), f"--out on a file: exit {rc}, {err[-300:]!r}")
    if T.failed == 0:
        shutil.rmtree(ROOT, ignore_errors=True)  # kept after a failure, to look at
    return T.report()


sys.exit(main())
