"""--help of every command and subcommand: exit 0 and a usage line naming
the command; `bench` and `data` list their subcommands, alone (a usage error,
exit 2, the list on stderr) or with --help (exit 0); an unknown command or
subcommand is named on stderr with exit 2. The commands are those the
top-level help lists, which main.c writes from its command table."""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from clitest import Checks, main_args, run  # noqa: E402

EXE = main_args()
T = Checks("cli_test_help")


def listed(text, heading):
    """The first words of the indented lines under `heading:`, up to the next
    blank line: ["demo", "data shapes", ...] or ["match", "train"]."""
    lines = text.splitlines()
    if heading + ":" not in lines:
        return []
    out = []
    for line in lines[lines.index(heading + ":") + 1:]:
        if not line.strip():
            break
        # names and summaries are separated by two or more spaces
        out.append(line.strip().split("  ")[0].strip())
    return out


rc, top, err = run(EXE, "--help")
T.check(rc == 0 and top.startswith("usage: reflabel"), f"--help: rc {rc}, {top[:80]!r}")
entries = listed(top, "commands")
T.check(len(entries) >= 8, f"--help lists only {entries}")
groups = {}
for entry in entries:
    words = entry.split()
    if len(words) == 2:
        groups.setdefault(words[0], []).append(words[1])
T.check(groups.get("data") == ["shapes", "stripes", "atlas"], f"data subcommands: {groups}")
T.check(groups.get("bench") == ["match", "train"], f"bench subcommands: {groups}")

rc, _, err = run(EXE)
T.check(rc == 2 and err.startswith("usage: reflabel"), f"no command: rc {rc}, {err[:80]!r}")

# Every command and subcommand: --help (and -h) on stdout, exit 0, nothing on
# stderr, and the first line is its usage.
for words in [e.split() for e in entries] + [[g] for g in groups]:
    for flag in ("--help", "-h"):
        what = " ".join(words + [flag])
        rc, out, err = run(EXE, *words, flag)
        first = out.splitlines()[0] if out else ""
        T.check(rc == 0, f"{what}: exit status {rc}")
        T.check(err == "", f"{what}: stderr {err!r}")
        T.check(first.startswith("usage: reflabel " + " ".join(words) + " "),
                f"{what}: usage line {first!r}")

# A group alone is a usage error that lists its subcommands, the list of
# --help, on stderr; an unknown subcommand gives one stderr line naming it.
nouns = {"data": "datasets", "bench": "benchmarks"}
for group, subs in groups.items():
    rc, out, _ = run(EXE, group, "--help")
    T.check(listed(out, nouns.get(group, "subcommands")) == subs,
            f"{group} --help lists {listed(out, nouns.get(group, 'subcommands'))}, not {subs}")
    rc, out2, err = run(EXE, group)
    T.check(rc == 2, f"{group} alone: exit status {rc}, expected 2")
    T.check(out2 == "" and err == out, f"{group} alone: stderr {err!r} should be its --help")
    rc, out, err = run(EXE, group, "frobnicate", "--help")
    lines = err.splitlines()
    T.check(rc == 2, f"{group} frobnicate: exit status {rc}, expected 2")
    T.check(out == "", f"{group} frobnicate: stdout {out!r}")
    T.check(len(lines) == 1 and "'frobnicate'" in err and ", ".join(subs) in err,
            f"{group} frobnicate: stderr {err!r} should be one line naming it and {subs}")

rc, out, err = run(EXE, "frobnicate")
T.check(rc == 2 and out == "" and err.splitlines()[0] == "reflabel: unknown command 'frobnicate'",
        f"unknown command: rc {rc}, stderr {err[:80]!r}")

sys.exit(T.report())
