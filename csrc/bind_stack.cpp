// pybind11 for the layer stack (csrc/cpu/stack.h): arrays in, arrays out, the GIL released while it
// runs. python/fastrnn/layers.py has checked every shape and dtype and made the arrays
// C-contiguous. Weights travel as one flat list, five entries per layer and direction (l*D + d):
// w_ih, w_hh, b_ih, b_hh, w_hr, None where absent; their gradients come back the same way.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "bind_util.h"
#include "cpu/stack.h"

namespace py = pybind11;
using namespace fastrnn;
using namespace fastrnn::bind;

namespace {

using Lengths = Sizes;

// A training forward's state, held by the Python result until backward; it keeps alive the
// arrays (x, weights) the state points into.
template <typename T>
struct StackContext {
  std::shared_ptr<StackState<T>> state;
  std::vector<py::object> keep;
  long steps, batch, input, hidden, proj, layers, directions;
  bool lstm;
  std::vector<std::vector<long>> weight_shapes;  // flat as the weights; empty: absent
};

template <typename T>
py::tuple stack_forward_py(const std::string& cell, const Array<T>& x, const Optional<T>& h0,
                           const Optional<T>& c0, const std::vector<Optional<T>>& weights,
                           long hidden, long layers, long directions, long proj,
                           const Lengths& lengths,
                           double dropout, std::uint64_t seed, bool training) {
  StackForward<T> a{};
  a.cell = parse_cell(cell);
  a.steps = x.shape(0);
  a.batch = x.shape(1);
  a.input = x.shape(2);
  a.hidden = hidden;
  a.proj = proj;
  a.layers = layers;
  a.directions = directions;
  if (long(weights.size()) != 5 * layers * directions)
    throw std::invalid_argument("stack_forward: 5 weight entries per layer and direction");
  std::vector<DirectionWeights<T>> w(layers * directions);
  for (size_t k = 0; k < w.size(); ++k) {
    w[k] = {ptr(weights[5 * k]), ptr(weights[5 * k + 1]),
            ptr(weights[5 * k + 2]), ptr(weights[5 * k + 3]),
            ptr(weights[5 * k + 4])};
  }
  a.weights = w.data();
  a.lengths = lengths ? lengths->data() : nullptr;
  a.x = x.data();
  a.h0 = ptr(h0);
  a.c0 = ptr(c0);
  a.dropout = dropout;
  a.seed = seed;
  a.training = training;
  const long S = proj > 0 ? proj : a.hidden, LD = layers * directions;
  Array<T> y = new_array<T>({a.steps, a.batch, directions * S}), h_n = new_array<T>({LD, a.batch, S});
  Optional<T> c_n;
  if (a.cell == CellKind::lstm) c_n = new_array<T>({LD, a.batch, a.hidden});
  a.y = y.mutable_data();
  a.h_n = h_n.mutable_data();
  a.c_n = mutable_ptr(c_n);
  std::shared_ptr<StackState<T>> state;
  {
    py::gil_scoped_release release;
    state = stack_forward<T>(a);
  }
  py::object ctx = py::none();
  if (state) {
    auto c = std::make_unique<StackContext<T>>();
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
    c->hidden = a.hidden;
    c->proj = proj;
    c->layers = layers;
    c->directions = directions;
    c->lstm = a.cell == CellKind::lstm;
    ctx = py::cast(std::move(c));
  }
  return py::make_tuple(y, h_n, c_n, ctx);
}

template <typename T>
py::tuple stack_backward_py(const StackContext<T>& ctx, const Optional<T>& dy,
                            const Optional<T>& dh_n, const Optional<T>& dc_n) {
  const long S = ctx.proj > 0 ? ctx.proj : ctx.hidden, LD = ctx.layers * ctx.directions;
  Array<T> dx = new_array<T>({ctx.steps, ctx.batch, ctx.input}), dh0 = new_array<T>({LD, ctx.batch, S});
  Optional<T> dc0;
  if (ctx.lstm) dc0 = new_array<T>({LD, ctx.batch, ctx.hidden});
  std::vector<Optional<T>> grads;
  for (const auto& shape : ctx.weight_shapes)
    grads.push_back(shape.empty() ? Optional<T>() : Optional<T>(new_array<T>({shape.begin(), shape.end()})));
  auto out = [&](long i) { return mutable_ptr(grads[i]); };
  std::vector<DirectionGrads<T>> g(LD);
  for (long k = 0; k < LD; ++k)
    g[k] = {out(5 * k), out(5 * k + 1), out(5 * k + 2), out(5 * k + 3), out(5 * k + 4)};
  StackBackward<T> b{};
  b.dy = ptr(dy);
  b.dh_n = ptr(dh_n);
  b.dc_n = ptr(dc_n);
  b.dx = dx.mutable_data();
  b.dh0 = dh0.mutable_data();
  b.dc0 = mutable_ptr(dc0);
  b.grads = g.data();
  {
    py::gil_scoped_release release;
    stack_backward<T>(*ctx.state, b);
  }
  return py::make_tuple(dx, dh0, dc0, grads);
}

template <typename T>
void bind_for(py::module_& m, const char* context_name) {
  py::class_<StackContext<T>>(m, context_name,
                              "What stack_backward needs from a training stack_forward.");
  m.def("stack_forward", &stack_forward_py<T>);
  m.def("stack_backward", &stack_backward_py<T>);
}

}  // namespace

void bind_stack(py::module_& m) {
  bind_for<float>(m, "StackContext32");
  bind_for<double>(m, "StackContext64");
}
