"""Seeded forests for the Tree-LSTM rows: parent arrays shaped like the two usual datasets.

sentence_lengths: words per sentence, round(exp(N(ln 17, 0.5))) clipped to [min, max]; a mean
    near 19 words, as in the Stanford Sentiment Treebank, with a long tail up to `max`.
binarized (SST-like, N-ary with N = 2): a full binary constituency tree over n words, each span
    split at a fraction drawn from Beta(2, 2) (about as deep as parse trees); 2n - 1 nodes,
    numbered in pre-order, so a node's left child has the smaller index (its position 1).
    Inputs (word vectors) on the leaves only.
dependency (Child-Sum): one node per word, each word after the first attached to an earlier word
    chosen uniformly among those with fewer than `max_children` (5) children; then the words are
    shuffled, so that the root sits anywhere in the sentence.
    Inputs on every node.

A forest is the trees' parent arrays concatenated (fastrnn.Forest.from_trees' numbering); the
first k trees of a forest of m > k trees are the forest of k trees (one stream of random numbers).
"""

from __future__ import annotations

from typing import List, Tuple

import numpy as np

MAX_CHILDREN = 5


def sentence_length(rng: np.random.Generator, words: Tuple[int, int]) -> int:
    lo, hi = words
    return int(np.clip(round(float(np.exp(rng.normal(np.log(17.0), 0.5)))), lo, hi))


def binarized_tree(rng: np.random.Generator, n_words: int) -> np.ndarray:
    """Parents of a full binary tree with n_words leaves (2*n_words - 1 nodes, pre-order)."""
    parents: List[int] = []
    stack = [(-1, n_words)]  # (parent, words in the span); popped in pre-order
    while stack:
        parent, span = stack.pop()
        node = len(parents)
        parents.append(parent)
        if span > 1:
            left = 1 + int(rng.binomial(span - 2, rng.beta(2.0, 2.0))) if span > 2 else 1
            stack.append((node, span - left))  # the right span is numbered after the left one
            stack.append((node, left))
    return np.asarray(parents, np.int64)


def dependency_tree(rng: np.random.Generator, n_words: int,
                    max_children: int = MAX_CHILDREN) -> np.ndarray:
    """Parents of a tree with n_words nodes, 0 to max_children children each, nodes shuffled."""
    parents = np.full(n_words, -1, np.int64)
    n_children = np.zeros(n_words, np.int64)
    for j in range(1, n_words):
        p = int(rng.choice(np.flatnonzero(n_children[:j] < max_children)))
        parents[j] = p
        n_children[p] += 1
    perm = rng.permutation(n_words)  # node j becomes node perm[j]
    shuffled = np.full(n_words, -1, np.int64)
    has_parent = parents >= 0
    shuffled[perm[has_parent]] = perm[parents[has_parent]]
    return shuffled


def make_forest(kind: str, n_trees: int, words: Tuple[int, int], seed: int) -> np.ndarray:
    """Parents (n_nodes,) of n_trees trees of `kind` ('binarized' or 'dependency')."""
    rng = np.random.default_rng([seed, {"binarized": 1, "dependency": 2}[kind]])
    make = binarized_tree if kind == "binarized" else dependency_tree
    parts, offset = [], 0
    for _ in range(n_trees):
        p = make(rng, sentence_length(rng, words))
        parts.append(np.where(p >= 0, p + offset, -1))
        offset += p.shape[0]
    return np.concatenate(parts)


def heights(parents: np.ndarray) -> np.ndarray:
    """Height of every node (0 for a leaf), by peeling leaves level after level."""
    n = parents.shape[0]
    waiting = np.bincount(parents[parents >= 0], minlength=n)  # children not yet done
    height = np.zeros(n, np.int64)
    frontier = np.flatnonzero(waiting == 0)
    level = 0
    while frontier.size:
        height[frontier] = level
        up = parents[frontier]
        up = up[up >= 0]
        np.subtract.at(waiting, up, 1)
        up = np.unique(up)
        frontier = up[waiting[up] == 0]
        level += 1
    return height
