// pybind11 for the Tree-LSTM: the forest schedule and the level-loop kernels. The Python layer
// (python/fastrnn/tree.py) has checked every shape and dtype and made the arrays C-contiguous.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <optional>
#include <vector>

#include "bind_util.h"
#include "cpu/forest.h"
#include "cpu/tree.h"

namespace py = pybind11;
using namespace fastrnn;
using namespace fastrnn::bind;

namespace {

Array<long> to_array(const std::vector<long>& v) {
  Array<long> out(static_cast<py::ssize_t>(v.size()));
  std::copy(v.begin(), v.end(), out.mutable_data());
  return out;
}

Forest make_forest_py(const Array<long>& parents) {
  const long* p = parents.data();
  const long n = parents.shape(0);
  py::gil_scoped_release release;
  return make_forest(p, n);
}

using Nodes = std::optional<Array<long>>;

template <typename T>
TreeForward<T> forward_args(const Forest& forest, long arity, const Array<T>& x,
                            const Nodes& input_nodes, const Array<T>& w_ih, const Array<T>& w_hh,
                            const Optional<T>& b_ih, const Optional<T>& b_hh) {
  TreeForward<T> a{};
  a.forest = &forest;
  a.arity = arity;
  a.input = x.shape(1);
  a.hidden = w_ih.shape(0) / 4;
  a.x = x.data();
  a.input_nodes = input_nodes ? input_nodes->data() : nullptr;
  a.n_inputs = input_nodes ? input_nodes->shape(0) : 0;
  a.w_ih = w_ih.data();
  a.w_hh = w_hh.data();
  a.b_ih = ptr(b_ih);
  a.b_hh = ptr(b_hh);
  return a;
}

template <typename T>
py::tuple tree_forward_py(const Forest& forest, long arity, const Array<T>& x,
                          const Nodes& input_nodes, const Array<T>& w_ih, const Array<T>& w_hh,
                          const Optional<T>& b_ih, const Optional<T>& b_hh, bool training) {
  TreeForward<T> a = forward_args(forest, arity, x, input_nodes, w_ih, w_hh, b_ih, b_hh);
  Array<T> h = new_array<T>({forest.n_nodes, a.hidden}), c = new_array<T>({forest.n_nodes, a.hidden});
  auto saved = training ? std::make_unique<TreeSaved<T>>() : nullptr;
  a.h = h.mutable_data();
  a.c = c.mutable_data();
  a.saved = saved.get();
  {
    py::gil_scoped_release release;
    tree_forward<T>(a);
  }
  py::object kept = saved ? py::cast(std::move(saved)) : py::none();
  return py::make_tuple(h, c, kept);
}

template <typename T>
py::tuple tree_backward_py(const Forest& forest, long arity, const Array<T>& x,
                           const Nodes& input_nodes, const Array<T>& w_ih, const Array<T>& w_hh,
                           const Optional<T>& b_ih, const Optional<T>& b_hh, TreeSaved<T>& saved,
                           const Optional<T>& dh, const Optional<T>& dc) {
  TreeForward<T> a = forward_args(forest, arity, x, input_nodes, w_ih, w_hh, b_ih, b_hh);
  a.saved = &saved;
  Array<T> dx = new_array<T>({x.shape(0), x.shape(1)}), dw_ih = new_array<T>({w_ih.shape(0), w_ih.shape(1)}),
           dw_hh = new_array<T>({w_hh.shape(0), w_hh.shape(1)});
  Optional<T> db_ih, db_hh;
  if (b_ih) db_ih = new_array<T>({b_ih->shape(0)});
  if (b_hh) db_hh = new_array<T>({b_hh->shape(0)});
  TreeBackward<T> g{};
  g.fwd = &a;
  g.dh = ptr(dh);
  g.dc = ptr(dc);
  g.dx = dx.mutable_data();
  g.dw_ih = dw_ih.mutable_data();
  g.dw_hh = dw_hh.mutable_data();
  g.db_ih = mutable_ptr(db_ih);
  g.db_hh = mutable_ptr(db_hh);
  {
    py::gil_scoped_release release;
    tree_backward<T>(g);
  }
  return py::make_tuple(dx, dw_ih, dw_hh, db_ih, db_hh);
}

}  // namespace

void bind_tree(py::module_& m) {
  py::class_<Forest>(m, "Forest", "The schedule of a batch of trees; see fastrnn.Forest.")
      .def(py::init(&make_forest_py), py::arg("parents"))
      .def_readonly("n_nodes", &Forest::n_nodes)
      .def_readonly("n_trees", &Forest::n_trees)
      .def_readonly("n_levels", &Forest::n_levels)
      .def_readonly("max_children", &Forest::max_children)
      .def_property_readonly("parents", [](const Forest& f) { return to_array(f.parents); })
      .def_property_readonly("heights", [](const Forest& f) { return to_array(f.heights); })
      .def_property_readonly("roots", [](const Forest& f) { return to_array(f.roots); })
      .def_property_readonly("order", [](const Forest& f) { return to_array(f.order); })
      .def_property_readonly("level_offsets",
                             [](const Forest& f) { return to_array(f.level_offsets); })
      .def_property_readonly("child_offsets",
                             [](const Forest& f) { return to_array(f.child_offsets); })
      .def_property_readonly("child_rows", [](const Forest& f) { return to_array(f.child_rows); });
  // What a training-mode forward keeps for backward; opaque to Python.
  py::class_<TreeSaved<float>, std::unique_ptr<TreeSaved<float>>>(m, "TreeSaved32");
  py::class_<TreeSaved<double>, std::unique_ptr<TreeSaved<double>>>(m, "TreeSaved64");
  m.def("tree_forward", &tree_forward_py<float>);
  m.def("tree_forward", &tree_forward_py<double>);
  m.def("tree_backward", &tree_backward_py<float>);
  m.def("tree_backward", &tree_backward_py<double>);
}
