"""fastrnn.Forest: the schedule of a batch of trees, and its validation."""

import numpy as np
import pytest

import fastrnn
from _tree_util import random_forest


def test_forest_heights_levels_children_of_a_small_forest():
    #   tree 1:  4 <- {0, 2},  2 <- {1}      tree 2: 3 alone      tree 3: 5 <- {6}
    parents = np.array([4, 2, 4, -1, -1, -1, 5])
    f = fastrnn.Forest(parents)
    assert (f.n_nodes, f.n_trees, f.n_levels) == (7, 3, 3)
    assert f.roots.tolist() == [3, 4, 5]
    assert f.heights.tolist() == [0, 0, 1, 0, 2, 1, 0]
    assert [f.level(l).tolist() for l in range(3)] == [[0, 1, 3, 6], [2, 5], [4]]
    assert f.children(4).tolist() == [0, 2]
    assert f.children(3).tolist() == []
    assert f.n_children.tolist() == [0, 0, 1, 0, 2, 1, 0]
    assert f.max_children == 2
    assert f.parents.tolist() == parents.tolist()


def test_forest_heights_match_a_walk_to_the_leaves():
    rng = np.random.default_rng(1)
    parents = random_forest(rng, 300, root_prob=0.05)
    f = fastrnn.Forest(parents)
    expected = np.zeros(300, np.int64)
    for _ in range(300):  # relax until fixed point
        for j in range(300):
            if parents[j] >= 0:
                expected[parents[j]] = max(expected[parents[j]], expected[j] + 1)
    assert f.heights.tolist() == expected.tolist()
    assert f.n_trees == int((parents < 0).sum())
    every_level = np.concatenate([f.level(l) for l in range(f.n_levels)])
    assert sorted(every_level.tolist()) == list(range(300))


def test_forest_from_trees_offsets_each_tree():
    f = fastrnn.Forest.from_trees([[-1, 0, 0], [-1], [1, -1]])
    assert f.parents.tolist() == [-1, 0, 0, -1, 5, -1]
    assert f.roots.tolist() == [0, 3, 5]


def test_forest_of_a_10000_deep_chain_and_a_node_with_100_children():
    deep = fastrnn.Forest(np.append(np.arange(1, 10000), -1))
    assert deep.n_levels == 10000 and deep.heights[0] == 0 and deep.heights[-1] == 9999
    wide = fastrnn.Forest(np.append(np.full(100, 100), -1))
    assert wide.n_levels == 2 and wide.max_children == 100
    assert wide.children(100).tolist() == list(range(100))


def test_forest_leaves_the_callers_array_unchanged_and_its_arrays_are_read_only():
    parents = np.array([2, 2, -1], dtype=np.int32)
    copy = parents.copy()
    f = fastrnn.Forest(parents)
    assert np.array_equal(parents, copy) and parents.dtype == np.int32
    with pytest.raises(ValueError):
        f.heights[0] = 5


def test_empty_forest():
    f = fastrnn.Forest(np.zeros(0, np.int64))
    assert (f.n_nodes, f.n_trees, f.n_levels) == (0, 0, 0)


@pytest.mark.parametrize("parents, fragment", [
    ([1, 2, 0], "cycle through node 0: 0 -> 1 -> 2 -> 0"),
    ([-1, 1], "cycle through node 1: 1 -> 1"),
    ([-1, 0, 3, 2, 3], "cycle through node 2"),
    ([-1, 0, 5], r"parents\[2\] = 5 is out of range"),
    ([-1, -2], r"parents\[1\] = -2 is out of range"),
])
def test_forest_rejects_cycles_and_out_of_range_parents_naming_the_node(parents, fragment):
    with pytest.raises(ValueError, match=fragment):
        fastrnn.Forest(np.array(parents))


def test_forest_rejects_non_integer_and_non_1d_parents():
    with pytest.raises(TypeError, match="parents must be an array of integers"):
        fastrnn.Forest(np.array([-1.0, 0.0]))
    with pytest.raises(ValueError, match="parents must be a 1-D array"):
        fastrnn.Forest(np.array([[-1, 0]]))
    with pytest.raises(ValueError, match=r"trees\[1\]: parents\[0\] = 3 is out of range"):
        fastrnn.Forest.from_trees([[-1], [3, -1]])
