#!/usr/bin/env bash
# Make a Hugging Face Space snapshot of this repository's HEAD: one commit, no history, every binary file
# (weights, screenshots) a Git LFS pointer, as a Space push requires.
#
# Why a snapshot: the Hub refuses a push whose commits contain any binary file outside LFS/Xet, history
# included, and this repository keeps its weights as plain git files so that a checkout without git-lfs
# (CI's) gets real files. tools/space.gitattributes names what goes to LFS; this script makes it the
# .gitattributes of a fresh copy of HEAD.
#
# Usage: tools/space_snapshot.sh [DIR]      (default: ../segloop-space; DIR is replaced)
# Then:  git -C DIR push --force https://huggingface.co/spaces/<user>/<space> main
set -euo pipefail

root="$(git rev-parse --show-toplevel)"
dest="${1:-$root/../segloop-space}"
if ! git lfs version >/dev/null 2>&1; then
    echo "git-lfs is needed (Debian/Ubuntu: apt-get install git-lfs; macOS: brew install git-lfs)" >&2
    exit 2
fi
rev="$(git -C "$root" rev-parse --short HEAD)"
rm -rf "$dest"
mkdir -p "$dest"
git -C "$root" archive HEAD | tar -x -C "$dest"
cp "$dest/tools/space.gitattributes" "$dest/.gitattributes"
cd "$dest"
git init -q -b main
git lfs install --local >/dev/null
git add -A
git -c user.name="SegLoop snapshot" -c user.email="segloop@localhost" commit -q -m "SegLoop Space snapshot of $rev"

# the check a Space push makes: no binary blob anywhere in what is pushed (numstat says "-" for binaries)
empty_tree="$(git hash-object -t tree /dev/null)"
binaries="$(git diff --numstat "$empty_tree" HEAD | awk -F'\t' '$1 == "-" {print $3}')"
if [ -n "$binaries" ]; then
    echo "binary files outside LFS (add their pattern to tools/space.gitattributes):" >&2
    echo "$binaries" >&2
    exit 1
fi
echo "snapshot of $rev in $dest: $(git ls-files | wc -l) files, $(git lfs ls-files | wc -l) in LFS, no history"
echo "push it: git -C $dest push --force https://huggingface.co/spaces/<user>/<space> main"
