"""Writes backbone/src/imagenet_classes.txt: the 1000 ImageNet-1k class names in
class-index order (WordNet synset order, as every ImageNet checkpoint uses),
one per line, the first WordNet lemma of each synset. Re-run with
`pip install timm` (timm ships the synset lists):

    ~/.venvs/fx/bin/python scripts/make_imagenet_classes.py
"""
import os

import timm.data

INFO = os.path.join(os.path.dirname(timm.data.__file__), "_info")
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "backbone", "src", "imagenet_classes.txt")

with open(os.path.join(INFO, "imagenet_synsets.txt")) as f:
    synsets = [line.strip() for line in f if line.strip()]
lemmas = {}
with open(os.path.join(INFO, "imagenet_synset_to_lemma.txt")) as f:
    for line in f:
        synset, names = line.rstrip("\n").split("\t", 1)
        lemmas[synset] = names.split(",")[0].strip()
assert len(synsets) == 1000
with open(OUT, "w") as f:
    f.write("\n".join(lemmas[s] for s in synsets) + "\n")
print("wrote", OUT)
