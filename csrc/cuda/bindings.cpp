// pybind11 only, for the CUDA module fastrnn._cuda: device pointers in as integers (the Python
// layer, python/fastrnn/cuda.py, has checked every array, allocated the outputs with the caller's
// library and found its current stream), one call into the layer driver, nothing returned. CUDA
// and cuBLAS errors arrive as fastrnn._cuda.CudaError.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "../bind_util.h"
#include "check.h"
#include "stack.h"
#include "tree.h"

namespace py = pybind11;
using fastrnn::CellKind;
using namespace fastrnn::gpu;

namespace {

using fastrnn::bind::parse_cell;
using fastrnn::bind::Sizes;

// A pointer from the dict of device pointers; an absent name or 0 is null.
template <typename P>
P* ptr(const py::dict& ptrs, const char* name) {
  if (!ptrs.contains(name)) return nullptr;
  return reinterpret_cast<P*>(ptrs[name].cast<std::uintptr_t>());
}

// The caller's stream. The legacy default stream (handle 0) becomes this thread's default stream,
// which orders with it both ways (it is a blocking stream) without being it.
CUstream_st* stream_of(std::uintptr_t handle) {
  return handle ? reinterpret_cast<CUstream_st*>(handle) : cudaStreamPerThread;
}

class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    check(cudaGetDevice(&previous_), "cudaGetDevice");
    if (device != previous_) check(cudaSetDevice(device), "cudaSetDevice");
  }
  ~DeviceGuard() { cudaSetDevice(previous_); }  // no throw from a destructor

 private:
  int previous_ = 0;
};

template <typename T, typename A>
LayerForward<T, A> forward_args(const std::string& cell, long steps, long batch, long input,
                                long hidden, const Sizes& batch_sizes, bool reverse,
                                const py::dict& p) {
  LayerForward<T, A> a{};
  a.cell = parse_cell(cell);
  a.steps = steps;
  a.batch = batch;
  a.input = input;
  a.hidden = hidden;
  a.batch_sizes = batch_sizes ? batch_sizes->data() : nullptr;
  a.reverse = reverse;
  a.x = ptr<const T>(p, "x");
  a.h0 = ptr<const T>(p, "h0");
  a.c0 = ptr<const T>(p, "c0");
  a.w_ih = ptr<const T>(p, "w_ih");
  a.w_hh = ptr<const T>(p, "w_hh");
  a.b_ih = ptr<const T>(p, "b_ih");
  a.b_hh = ptr<const T>(p, "b_hh");
  a.y = ptr<T>(p, "y");
  a.h_n = ptr<T>(p, "h_n");
  a.c_n = ptr<T>(p, "c_n");
  a.saved = ptr<A>(p, "saved");
  return a;
}

template <typename T, typename A>
void forward(const std::string& cell, long steps, long batch, long input, long hidden,
             const Sizes& batch_sizes, bool reverse, const py::dict& p, int device,
             std::uintptr_t stream) {
  const LayerForward<T, A> a = forward_args<T, A>(cell, steps, batch, input, hidden, batch_sizes, reverse, p);
  py::gil_scoped_release release;
  DeviceGuard guard(device);
  layer_forward(a, stream_of(stream));
}

template <typename T, typename A>
void backward(const std::string& cell, long steps, long batch, long input, long hidden,
              const Sizes& batch_sizes, bool reverse, const py::dict& p, int device,
              std::uintptr_t stream) {
  const LayerForward<T, A> a = forward_args<T, A>(cell, steps, batch, input, hidden, batch_sizes, reverse, p);
  const LayerBackward<T, A> g{&a,
                              ptr<const T>(p, "dy"),
                              ptr<const T>(p, "dh_n"),
                              ptr<const T>(p, "dc_n"),
                              ptr<T>(p, "dx"),
                              ptr<T>(p, "dh0"),
                              ptr<T>(p, "dc0"),
                              ptr<A>(p, "dw_ih"),
                              ptr<A>(p, "dw_hh"),
                              ptr<A>(p, "db_ih"),
                              ptr<A>(p, "db_hh"),
                              nullptr};
  py::gil_scoped_release release;
  DeviceGuard guard(device);
  layer_backward(g, stream_of(stream));
}

// The one dtype dispatch: the stored type by NumPy name, with its arithmetic type.
template <template <typename, typename> class Call, typename... Args>
auto by_dtype(const std::string& dtype, Args&&... args) {
  if (dtype == "float32") return Call<float, float>::run(args...);
  if (dtype == "float64") return Call<double, double>::run(args...);
  if (dtype == "float16") return Call<__half, float>::run(args...);
  if (dtype == "bfloat16") return Call<__nv_bfloat16, float>::run(args...);
  throw std::invalid_argument("unsupported dtype '" + dtype + "'");
}
template <typename T, typename A>
struct Forward {
  template <typename... Args>
  static void run(Args&... args) { forward<T, A>(args...); }
};
template <typename T, typename A>
struct Backward {
  template <typename... Args>
  static void run(Args&... args) { backward<T, A>(args...); }
};

// ---- the whole network (stack.h) ----
// Weights and their gradients travel as flat lists of pointers, five per layer and direction
// (l*D + d): w_ih, w_hh, b_ih, b_hh, w_hr, 0 where absent.
using Pointers = std::vector<std::uintptr_t>;

template <typename P>
P* at(const Pointers& list, size_t i) {
  return reinterpret_cast<P*>(list.at(i));
}

template <typename T, typename A>
std::shared_ptr<StackHandle> stack_forward_call(const std::string& cell, long steps, long batch,
                                                long input, long hidden, long proj, long layers,
                                                long directions, const Sizes& lengths,
                                                double dropout, std::uint64_t seed, bool training,
                                                const py::dict& p, const Pointers& weights,
                                                int device, std::uintptr_t stream) {
  std::vector<fastrnn::DirectionWeights<T>> w(layers * directions);
  if (weights.size() != 5 * w.size())
    throw std::invalid_argument("stack_forward: 5 weight pointers per layer and direction");
  for (size_t k = 0; k < w.size(); ++k)
    w[k] = {at<const T>(weights, 5 * k), at<const T>(weights, 5 * k + 1),
            at<const T>(weights, 5 * k + 2), at<const T>(weights, 5 * k + 3),
            at<const T>(weights, 5 * k + 4)};
  fastrnn::StackForward<T> a{};
  a.cell = parse_cell(cell);
  a.steps = steps;
  a.batch = batch;
  a.input = input;
  a.hidden = hidden;
  a.proj = proj;
  a.layers = layers;
  a.directions = directions;
  a.lengths = lengths ? lengths->data() : nullptr;
  a.x = ptr<const T>(p, "x");
  a.h0 = ptr<const T>(p, "h0");
  a.c0 = ptr<const T>(p, "c0");
  a.weights = w.data();
  a.dropout = dropout;
  a.seed = seed;
  a.training = training;
  a.y = ptr<T>(p, "y");
  a.h_n = ptr<T>(p, "h_n");
  a.c_n = ptr<T>(p, "c_n");
  py::gil_scoped_release release;
  DeviceGuard guard(device);
  return stack_forward<T, A>(a, stream_of(stream));
}

template <typename T, typename A>
void stack_backward_call(StackHandle& state, const py::dict& p, const Pointers& grads, int device,
                         std::uintptr_t stream) {
  std::vector<fastrnn::DirectionGrads<A>> g(grads.size() / 5);
  for (size_t k = 0; k < g.size(); ++k)
    g[k] = {at<A>(grads, 5 * k), at<A>(grads, 5 * k + 1), at<A>(grads, 5 * k + 2),
            at<A>(grads, 5 * k + 3), at<A>(grads, 5 * k + 4)};
  const StackBackward<T, A> b{ptr<const T>(p, "dy"), ptr<const T>(p, "dh_n"),
                              ptr<const T>(p, "dc_n"), ptr<T>(p, "dx"),
                              ptr<T>(p, "dh0"),        ptr<T>(p, "dc0"),
                              g.data()};
  py::gil_scoped_release release;
  DeviceGuard guard(device);
  stack_backward<T, A>(state, b, stream_of(stream));
}

template <typename T, typename A>
struct StackForwardCall {
  template <typename... Args>
  static std::shared_ptr<StackHandle> run(Args&... args) { return stack_forward_call<T, A>(args...); }
};
template <typename T, typename A>
struct StackBackwardCall {
  template <typename... Args>
  static void run(Args&... args) { stack_backward_call<T, A>(args...); }
};

// ---- the Tree-LSTM (tree.h) ----
// The forest's schedule as fastrnn.Forest computed it (host arrays); x, weights, outputs and
// gradients as device pointers by name.
using Longs = py::array_t<long, py::array::c_style>;

template <typename T, typename A>
std::shared_ptr<TreeHandle> tree_forward_call(long arity, long input, long hidden,
                                              const Longs& order, const Longs& level_offsets,
                                              const Longs& child_offsets, const Longs& child_rows,
                                              bool training, const py::dict& p, int device,
                                              std::uintptr_t stream) {
  const long n = static_cast<long>(order.shape(0));
  if (level_offsets.shape(0) < 1 || child_offsets.shape(0) != n + 1 ||
      child_rows.shape(0) != (n ? child_offsets.data()[n] : 0))
    throw std::invalid_argument("tree_forward: the schedule's arrays do not fit together");
  TreeForwardArgs<T> a{};
  a.forest = {n, static_cast<long>(level_offsets.shape(0)) - 1, order.data(),
              level_offsets.data(), child_offsets.data(), child_rows.data()};
  a.arity = arity;
  a.input = input;
  a.hidden = hidden;
  a.x = ptr<const T>(p, "x");
  a.w_ih = ptr<const T>(p, "w_ih");
  a.w_hh = ptr<const T>(p, "w_hh");
  a.b_ih = ptr<const T>(p, "b_ih");
  a.b_hh = ptr<const T>(p, "b_hh");
  a.h = ptr<T>(p, "h");
  a.c = ptr<T>(p, "c");
  a.training = training;
  py::gil_scoped_release release;
  DeviceGuard guard(device);
  return tree_forward<T, A>(a, stream_of(stream));
}

template <typename T, typename A>
void tree_backward_call(TreeHandle& state, const py::dict& p, int device, std::uintptr_t stream) {
  const TreeBackwardArgs<T, A> g{ptr<const T>(p, "dh"), ptr<const T>(p, "dc"), ptr<T>(p, "dx"),
                                 ptr<A>(p, "dw_ih"),    ptr<A>(p, "dw_hh"),    ptr<A>(p, "db_ih"),
                                 ptr<A>(p, "db_hh")};
  py::gil_scoped_release release;
  DeviceGuard guard(device);
  tree_backward<T, A>(state, g, stream_of(stream));
}

template <typename T, typename A>
struct TreeForwardCall {
  template <typename... Args>
  static std::shared_ptr<TreeHandle> run(Args&... args) { return tree_forward_call<T, A>(args...); }
};
template <typename T, typename A>
struct TreeBackwardCall {
  template <typename... Args>
  static void run(Args&... args) { tree_backward_call<T, A>(args...); }
};

// (number of devices, "" ) or (0, why none can be used).
py::tuple probe() {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess)
    return py::make_tuple(0, std::string(cudaGetErrorName(status)) + ": " + cudaGetErrorString(status));
  return py::make_tuple(count, count ? "" : "no CUDA device");
}

}  // namespace

PYBIND11_MODULE(_cuda, m) {
  m.doc() = "fastrnn's CUDA kernels; use fastrnn.cuda and the fastrnn functions, which check the arguments.";
  py::register_exception<CudaError>(m, "CudaError", PyExc_RuntimeError);
  m.def("probe", &probe, "(device count, reason when 0) without raising.");
  m.def("layer_forward",
        [](const std::string& dtype, const std::string& cell, long steps, long batch, long input,
           long hidden, const Sizes& batch_sizes, bool reverse, const py::dict& ptrs, int device,
           std::uintptr_t stream) {
          by_dtype<Forward>(dtype, cell, steps, batch, input, hidden, batch_sizes, reverse, ptrs, device, stream);
        });
  m.def("layer_backward",
        [](const std::string& dtype, const std::string& cell, long steps, long batch, long input,
           long hidden, const Sizes& batch_sizes, bool reverse, const py::dict& ptrs, int device,
           std::uintptr_t stream) {
          by_dtype<Backward>(dtype, cell, steps, batch, input, hidden, batch_sizes, reverse, ptrs, device, stream);
        });
  py::class_<StackHandle, std::shared_ptr<StackHandle>>(
      m, "StackState", "What stack_backward needs from a training stack_forward, in device memory.");
  m.def("stack_forward",
        [](const std::string& dtype, const std::string& cell, long steps, long batch, long input,
           long hidden, long proj, long layers, long directions, const Sizes& lengths,
           double dropout, std::uint64_t seed, bool training, const py::dict& ptrs,
           const Pointers& weights, int device, std::uintptr_t stream) {
          return by_dtype<StackForwardCall>(dtype, cell, steps, batch, input, hidden, proj, layers,
                                            directions, lengths, dropout, seed, training, ptrs,
                                            weights, device, stream);
        });
  m.def("stack_backward",
        [](const std::string& dtype, StackHandle& state, const py::dict& ptrs,
           const Pointers& grads, int device, std::uintptr_t stream) {
          by_dtype<StackBackwardCall>(dtype, state, ptrs, grads, device, stream);
        });
  py::class_<TreeHandle, std::shared_ptr<TreeHandle>>(
      m, "TreeState", "What tree_backward needs from a training tree_forward, in device memory.");
  m.def("tree_forward",
        [](const std::string& dtype, long arity, long input, long hidden, const Longs& order,
           const Longs& level_offsets, const Longs& child_offsets, const Longs& child_rows,
           bool training, const py::dict& ptrs, int device, std::uintptr_t stream) {
          return by_dtype<TreeForwardCall>(dtype, arity, input, hidden, order, level_offsets,
                                           child_offsets, child_rows, training, ptrs, device,
                                           stream);
        });
  m.def("tree_backward", [](const std::string& dtype, TreeHandle& state, const py::dict& ptrs,
                            int device, std::uintptr_t stream) {
    by_dtype<TreeBackwardCall>(dtype, state, ptrs, device, stream);
  });
}
