#!/usr/bin/env python3
"""Cut a fuzz corpus to at most N files that keep the most coverage, for checking in.

`cargo fuzz cmin` keeps every file that adds a feature: for these targets that is 400 to 1,500 files and
several MB. This keeps a greedy set cover instead: the file adding the most edges not yet covered first
(the smaller on a tie), until N files or nothing new. It reads libFuzzer's merge control file:

    T=parse_lines; B=fuzz/target/x86_64-unknown-linux-gnu/release
    mkdir -p /tmp/m && $B/$T -merge=1 -use_counters=0 -merge_control_file=/tmp/$T.ctl /tmp/m \
        fuzz/seeds/$T WORK_CORPUS/$T
    python3 fuzz/cover_corpus.py /tmp/$T.ctl fuzz/corpus/$T 200     # run from the repo root

and copies the files kept into the output directory (make it empty first).
"""
import os
import shutil
import sys


def main():
    ctl, out, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    lines = open(ctl).read().split("\n")
    count = int(lines[0])
    files = lines[2 : 2 + count]
    cov = {}
    for line in lines[2 + count :]:
        parts = line.split()
        if parts and parts[0] == "FT":
            cov[int(parts[1])] = set(parts[2:])
    every = set().union(*cov.values()) if cov else set()
    got, keep = set(), []
    while len(keep) < n and cov:
        best = max(cov, key=lambda i: (len(cov[i] - got), -os.path.getsize(files[i])))
        if not cov[best] - got:
            break
        got |= cov.pop(best)
        keep.append(files[best])
    os.makedirs(out, exist_ok=True)
    for f in keep:
        shutil.copy(f, out)
    size = sum(os.path.getsize(f) for f in keep)
    share = 100 * len(got) / max(1, len(every))
    print(f"kept {len(keep)} files, {size} bytes, {len(got)}/{len(every)} edges ({share:.1f}%)")


if __name__ == "__main__":
    main()
