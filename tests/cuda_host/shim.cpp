// Host build of the CUDA layer driver (csrc/cuda/driver.h) for tests/test_cuda_host.py: the same
// time loop and the same per-thread functions (csrc/cuda/pointwise.cuh), with each(n, f) a plain
// loop over every index and the GEMMs three plain loops. Built by the test with the host compiler;
// no CUDA needed. NumPy arrays in and out, float32 and float64.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstring>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "../../csrc/cuda/driver.h"
#include "../../csrc/cuda/stack_driver.h"
#include "host_backend.h"

namespace py = pybind11;
using fastrnn::CellKind;
using namespace fastrnn::gpu;

namespace {

using Sizes = std::optional<py::array_t<long, py::array::c_style>>;

CellKind parse_cell(const std::string& name) {
  if (name == "rnn_tanh") return CellKind::rnn_tanh;
  if (name == "rnn_relu") return CellKind::rnn_relu;
  if (name == "lstm") return CellKind::lstm;
  if (name == "gru") return CellKind::gru;
  throw std::invalid_argument("unknown cell '" + name + "'");
}

template <typename T>
LayerForward<T, T> args(const std::string& cell, long steps, long batch, bool reverse,
                        const Array<T>& x, const Optional<T>& h0, const Optional<T>& c0,
                        const Array<T>& w_ih, const Array<T>& w_hh, const Optional<T>& b_ih,
                        const Optional<T>& b_hh, const Sizes& batch_sizes) {
  LayerForward<T, T> a{};
  a.cell = parse_cell(cell);
  a.steps = steps;
  a.batch = batch;
  a.input = w_ih.shape(1);
  a.hidden = w_hh.shape(1);
  a.batch_sizes = batch_sizes ? batch_sizes->data() : nullptr;
  a.reverse = reverse;
  a.x = x.data();
  a.h0 = ptr(h0);
  a.c0 = ptr(c0);
  a.w_ih = w_ih.data();
  a.w_hh = w_hh.data();
  a.b_ih = ptr(b_ih);
  a.b_hh = ptr(b_hh);
  return a;
}

template <typename T>
py::tuple forward(const std::string& cell, long steps, long batch, bool reverse, const Array<T>& x,
                  const Optional<T>& h0, const Optional<T>& c0, const Array<T>& w_ih,
                  const Array<T>& w_hh, const Optional<T>& b_ih, const Optional<T>& b_hh,
                  const Sizes& batch_sizes, bool training) {
  LayerForward<T, T> a = args(cell, steps, batch, reverse, x, h0, c0, w_ih, w_hh, b_ih, b_hh, batch_sizes);
  const long rows = x.shape(0), H = a.hidden, cols = saved_columns(a.cell, H);
  Array<T> y({rows, H}), h_n({batch, H});
  Optional<T> c_n, saved;
  if (a.cell == CellKind::lstm) c_n = Array<T>({batch, H});
  if (training && cols > 0) saved = Array<T>({rows, cols});
  a.y = y.mutable_data();
  a.h_n = h_n.mutable_data();
  a.c_n = mptr(c_n);
  a.saved = mptr(saved);
  HostBackend be;
  run_forward(be, a);
  return py::make_tuple(y, h_n, c_n, saved);
}

template <typename T>
py::tuple backward(const std::string& cell, long steps, long batch, bool reverse, const Array<T>& x,
                   const Optional<T>& h0, const Optional<T>& c0, const Array<T>& w_ih,
                   const Array<T>& w_hh, const Optional<T>& b_ih, const Optional<T>& b_hh,
                   const Sizes& batch_sizes, const Array<T>& y, const Optional<T>& saved,
                   const Optional<T>& dy, const Optional<T>& dh_n, const Optional<T>& dc_n) {
  LayerForward<T, T> a = args(cell, steps, batch, reverse, x, h0, c0, w_ih, w_hh, b_ih, b_hh, batch_sizes);
  a.y = const_cast<T*>(y.data());
  a.saved = const_cast<T*>(ptr(saved));
  const long rows = x.shape(0), H = a.hidden, G = w_hh.shape(0);
  Array<T> dx({rows, a.input}), dh0({batch, H}), dw_ih({G, a.input}), dw_hh({G, H});
  Optional<T> dc0, db_ih, db_hh;
  if (a.cell == CellKind::lstm) dc0 = Array<T>({batch, H});
  if (b_ih) db_ih = Array<T>({G});
  if (b_hh) db_hh = Array<T>({G});
  LayerBackward<T, T> g{&a, ptr(dy), ptr(dh_n), ptr(dc_n), dx.mutable_data(), dh0.mutable_data(),
                        mptr(dc0), dw_ih.mutable_data(), dw_hh.mutable_data(), mptr(db_ih), mptr(db_hh),
                        nullptr};
  HostBackend be;
  run_backward(be, g);
  return py::make_tuple(dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh);
}

// ---- the stack driver (stack_driver.h); weights as bind_stack.cpp's flat list, five per layer and
// direction: w_ih, w_hh, b_ih, b_hh, w_hr, None where absent.

template <typename T>
struct HostStack {
  std::unique_ptr<StackState<HostBackend, T, T>> state;
  std::vector<py::object> keep;  // x and the weights, which the state points into
  std::vector<std::vector<long>> weight_shapes;
  long steps, batch, input, S, H;
};

template <typename T>
py::tuple stack_forward(const std::string& cell, const Array<T>& x, const Optional<T>& h0,
                        const Optional<T>& c0, const std::vector<Optional<T>>& weights, long hidden,
                        long layers, long directions, long proj, const Sizes& lengths,
                        double dropout, std::uint64_t seed, bool training) {
  fastrnn::StackForward<T> a{};
  a.cell = parse_cell(cell);
  a.steps = x.shape(0);
  a.batch = x.shape(1);
  a.input = x.shape(2);
  a.hidden = hidden;
  a.proj = proj;
  a.layers = layers;
  a.directions = directions;
  std::vector<fastrnn::DirectionWeights<T>> w(layers * directions);
  for (size_t k = 0; k < w.size(); ++k)
    w[k] = {ptr(weights.at(5 * k)), ptr(weights.at(5 * k + 1)), ptr(weights.at(5 * k + 2)),
            ptr(weights.at(5 * k + 3)), ptr(weights.at(5 * k + 4))};
  a.weights = w.data();
  a.lengths = lengths ? lengths->data() : nullptr;
  a.x = x.data();
  a.h0 = ptr(h0);
  a.c0 = ptr(c0);
  a.dropout = dropout;
  a.seed = seed;
  a.training = training;
  const long S = proj > 0 ? proj : hidden, LD = layers * directions;
  Array<T> y({a.steps, a.batch, directions * S}), h_n({LD, a.batch, S});
  std::fill_n(y.mutable_data(), y.size(), T(-7777));  // every value must be written
  Optional<T> c_n;
  if (a.cell == CellKind::lstm) c_n = Array<T>({LD, a.batch, hidden});
  a.y = y.mutable_data();
  a.h_n = h_n.mutable_data();
  a.c_n = mptr(c_n);
  HostBackend be;
  auto state = run_stack_forward<HostBackend, T, T>(be, a);
  py::object ctx = py::none();
  if (state) {
    auto c = std::make_unique<HostStack<T>>();
    c->state = std::move(state);
    c->keep.push_back(x);
    for (const auto& wk : weights) {
      c->keep.push_back(wk ? py::object(*wk) : py::none());
      std::vector<long> shape;
      if (wk)
        for (long i = 0; i < wk->ndim(); ++i) shape.push_back(wk->shape(i));
      c->weight_shapes.push_back(shape);
    }
    c->steps = a.steps;
    c->batch = a.batch;
    c->input = a.input;
    c->S = S;
    c->H = hidden;
    ctx = py::cast(std::move(c));
  }
  return py::make_tuple(y, h_n, c_n, ctx);
}

template <typename T>
py::tuple stack_backward(const HostStack<T>& ctx, const Optional<T>& dy, const Optional<T>& dh_n,
                         const Optional<T>& dc_n) {
  const auto& a = ctx.state->args;
  const long LD = a.layers * a.directions;
  Array<T> dx({ctx.steps, ctx.batch, ctx.input}), dh0({LD, ctx.batch, ctx.S});
  std::fill_n(dx.mutable_data(), dx.size(), T(-7777));
  Optional<T> dc0;
  if (a.cell == CellKind::lstm) dc0 = Array<T>({LD, ctx.batch, ctx.H});
  std::vector<Optional<T>> grads;
  for (const auto& shape : ctx.weight_shapes)
    grads.push_back(shape.empty() ? Optional<T>() : Optional<T>(Array<T>(shape)));
  std::vector<fastrnn::DirectionGrads<T>> g(LD);
  for (long k = 0; k < LD; ++k)
    g[k] = {mptr(grads[5 * k]), mptr(grads[5 * k + 1]), mptr(grads[5 * k + 2]),
            mptr(grads[5 * k + 3]), mptr(grads[5 * k + 4])};
  const StackBackward<T, T> b{ptr(dy), ptr(dh_n), ptr(dc_n), dx.mutable_data(), dh0.mutable_data(),
                              mptr(dc0), g.data()};
  HostBackend be;
  run_stack_backward(be, *ctx.state, b);
  return py::make_tuple(dx, dh0, dc0, grads);
}

template <typename T>
void bind_stack(py::module_& m, const char* name) {
  py::class_<HostStack<T>>(m, name);
  m.def("stack_forward", &stack_forward<T>);
  m.def("stack_backward", &stack_backward<T>);
}

}  // namespace

PYBIND11_MODULE(_cuda_host, m) {
  bind_stack<double>(m, "HostStack64");
  bind_stack<float>(m, "HostStack32");
  m.def("layer_forward", &forward<double>);
  m.def("layer_forward", &forward<float>);
  m.def("layer_backward", &backward<double>);
  m.def("layer_backward", &backward<float>);
}
