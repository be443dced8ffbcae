"""Code size of a vmauto binary by crate: symbol sizes (`nm -S`) of an unstripped build,
demangled; generic code of core/alloc is counted under the first crate its name mentions.

    python3 tests/bench/size-by-crate.py <unstripped vmauto> [TOP]

Build one with `cargo rustc --release --locked --bin vmauto -- -C strip=none`: the code is
the release build's, with its symbol table kept.
"""
import collections
import re
import subprocess
import sys

SKIP = {"core", "alloc", "std", "ptr", "drop_in_place", "future", "iter", "slice", "option",
        "result", "fmt", "ops", "mem", "sync", "vec", "boxed", "str", "hash", "cmp", "array",
        "cell", "marker", "adapters", "panic", "convert", "intrinsics", "any", "async_iter",
        "task", "collections", "btree", "map", "raw_vec", "string", "rc", "num", "char",
        "clone", "default", "pin", "impl", "dyn", "for", "closure", "mut", "const", "as"}


def main() -> None:
    out = subprocess.run(["nm", "-S", "--size-sort", "-C", sys.argv[1]],
                         capture_output=True, text=True, check=True).stdout
    by_crate = collections.Counter()
    total = 0
    for line in out.splitlines():
        parts = line.split(" ", 3)
        if len(parts) < 4 or parts[2] not in "tTwW":
            continue
        size, name = int(parts[1], 16), parts[3]
        total += size
        crates = [c for c in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)::", name) if c not in SKIP]
        by_crate[crates[0] if crates else "<" + name.split(".")[0][:24] + ">"] += size
    print(f"code in symbols: {total / 1e6:.1f} MB")
    for crate, size in by_crate.most_common(int(sys.argv[2]) if len(sys.argv) > 2 else 40):
        print(f"{size / 1e6:7.2f} MB  {crate}")


if __name__ == "__main__":
    main()
