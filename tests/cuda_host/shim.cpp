// Host build of the CUDA layer driver (csrc/cuda/driver.h) for tests/test_cuda_host.py: the same
// time loop and the same per-thread functions (csrc/cuda/pointwise.cuh), with each(n, f) a plain
// loop over every index and the GEMMs three plain loops. Built by the test with the host compiler;
// no CUDA needed. NumPy arrays in and out, float32 and float64.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "../../csrc/cuda/driver.h"

namespace py = pybind11;
using fastrnn::CellKind;
using namespace fastrnn::gpu;

namespace {

struct HostBackend {
  template <typename U>
  std::vector<U> alloc(long n) {
    return std::vector<U>(n, U(-7777));  // not zero: a read before a write shows
  }
  template <typename F>
  void each(long n, const F& f) {
    for (long i = 0; i < n; ++i) f(i);
  }
  template <typename T, typename C>
  void gemm(bool ta, bool tb, long m, long n, long k, const T* a, long lda, const T* b, long ldb,
            bool accumulate, C* c, long ldc) {
    for (long i = 0; i < m; ++i)
      for (long j = 0; j < n; ++j) {
        C sum = accumulate ? c[i * ldc + j] : C(0);
        for (long p = 0; p < k; ++p)
          sum += C(ta ? a[p * lda + i] : a[i * lda + p]) * C(tb ? b[j * ldb + p] : b[p * ldb + j]);
        c[i * ldc + j] = sum;
      }
  }
};

template <typename T>
using Array = py::array_t<T, py::array::c_style>;
template <typename T>
using Optional = std::optional<Array<T>>;
using Sizes = std::optional<py::array_t<long, py::array::c_style>>;

CellKind parse_cell(const std::string& name) {
  if (name == "rnn_tanh") return CellKind::rnn_tanh;
  if (name == "rnn_relu") return CellKind::rnn_relu;
  if (name == "lstm") return CellKind::lstm;
  if (name == "gru") return CellKind::gru;
  throw std::invalid_argument("unknown cell '" + name + "'");
}

template <typename T>
const T* ptr(const Optional<T>& a) {
  return a ? a->data() : nullptr;
}
template <typename T>
T* mptr(Optional<T>& a) {
  return a ? a->mutable_data() : nullptr;
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
  const long rows = x.shape(0), H = a.hidden, cols = saved_columns_of(a.cell, H);
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
                        mptr(dc0), dw_ih.mutable_data(), dw_hh.mutable_data(), mptr(db_ih), mptr(db_hh)};
  HostBackend be;
  run_backward(be, g);
  return py::make_tuple(dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh);
}

}  // namespace

PYBIND11_MODULE(_cuda_host, m) {
  m.def("layer_forward", &forward<double>);
  m.def("layer_forward", &forward<float>);
  m.def("layer_backward", &backward<double>);
  m.def("layer_backward", &backward<float>);
}
