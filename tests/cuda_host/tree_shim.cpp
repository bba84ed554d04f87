// Host build of the CUDA Tree-LSTM driver (csrc/cuda/tree_driver.h) for
// tests/test_cuda_tree_host.py: the same level loop and the same per-thread functions
// (csrc/cuda/tree_nodes.cuh) over the host backend of host_backend.h.
// The schedule comes from fastrnn.Forest, as the CUDA binding gets it. float32 and float64.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <memory>
#include <vector>

#include "../../csrc/cuda/tree_driver.h"
#include "host_backend.h"

using namespace fastrnn::gpu;

namespace {

using Longs = py::array_t<long, py::array::c_style>;

template <typename T>
struct HostTree {
  std::unique_ptr<TreeState<HostBackend, T, T>> state;
  std::vector<py::object> keep;  // x and the weights, which the state points into
  std::vector<py::ssize_t> x_shape, w_ih_shape, w_hh_shape;
  bool bias;
};

template <typename T>
py::tuple tree_forward(const Longs& order, const Longs& level_offsets, const Longs& child_offsets,
                       const Longs& child_rows, long arity, const Array<T>& x,
                       const Array<T>& w_ih, const Array<T>& w_hh, const Optional<T>& b_ih,
                       const Optional<T>& b_hh, bool training) {
  TreeForwardArgs<T> a{};
  a.forest = {static_cast<long>(order.shape(0)), static_cast<long>(level_offsets.shape(0)) - 1,
              order.data(), level_offsets.data(), child_offsets.data(), child_rows.data()};
  a.arity = arity;
  a.input = x.shape(1);
  a.hidden = w_ih.shape(0) / 4;
  a.x = x.data();
  a.w_ih = w_ih.data();
  a.w_hh = w_hh.data();
  a.b_ih = ptr(b_ih);
  a.b_hh = ptr(b_hh);
  a.training = training;
  const long n = x.shape(0);
  Array<T> h({n, a.hidden}), c({n, a.hidden});
  std::fill_n(h.mutable_data(), h.size(), T(-7777));  // every value must be written
  std::fill_n(c.mutable_data(), c.size(), T(-7777));
  a.h = h.mutable_data();
  a.c = c.mutable_data();
  HostBackend be;
  auto state = run_tree_forward<HostBackend, T, T>(be, a);
  py::object ctx = py::none();
  if (state) {
    auto t = std::make_unique<HostTree<T>>();
    t->state = std::move(state);
    t->keep = {x, w_ih, w_hh};
    t->x_shape = {x.shape(0), x.shape(1)};
    t->w_ih_shape = {w_ih.shape(0), w_ih.shape(1)};
    t->w_hh_shape = {w_hh.shape(0), w_hh.shape(1)};
    t->bias = b_ih.has_value();
    ctx = py::cast(std::move(t));
  }
  return py::make_tuple(h, c, ctx);
}

template <typename T>
py::tuple tree_backward(const HostTree<T>& t, const Optional<T>& dh, const Optional<T>& dc) {
  Array<T> dx(t.x_shape), dw_ih(t.w_ih_shape), dw_hh(t.w_hh_shape);
  Optional<T> db_ih, db_hh;
  if (t.bias) {
    db_ih = Array<T>(t.w_ih_shape[0]);
    db_hh = Array<T>(t.w_hh_shape[0]);
  }
  for (Array<T>* a : {&dx, &dw_ih, &dw_hh}) std::fill_n(a->mutable_data(), a->size(), T(-7777));
  const TreeBackwardArgs<T, T> g{ptr(dh), ptr(dc), dx.mutable_data(), dw_ih.mutable_data(),
                                 dw_hh.mutable_data(), mptr(db_ih), mptr(db_hh)};
  HostBackend be;
  run_tree_backward(be, *t.state, g);
  return py::make_tuple(dx, dw_ih, dw_hh, db_ih, db_hh);
}

template <typename T>
void bind_tree(py::module_& m, const char* name) {
  py::class_<HostTree<T>>(m, name);
  m.def("tree_forward", &tree_forward<T>);
  m.def("tree_backward", &tree_backward<T>);
}

}  // namespace

PYBIND11_MODULE(_cuda_tree_host, m) {
  bind_tree<double>(m, "HostTree64");
  bind_tree<float>(m, "HostTree32");
}
