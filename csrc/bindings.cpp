// pybind11 only: arrays in, arrays out, the GIL released while a kernel runs. The Python layer
// (python/fastrnn/functional.py) has already checked shapes and dtypes and made every array
// C-contiguous, so nothing here copies.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>
#include <stdexcept>
#include <string>

#include "bind_util.h"
#include "cpu/blas.h"
#include "cpu/buffer.h"
#include "cpu/pack_cache.h"
#include "cpu/isa.h"
#include "cpu/sequence.h"
#include "cpu/threads.h"

namespace py = pybind11;
using namespace fastrnn;
using namespace fastrnn::bind;

void bind_stack(py::module_& m);  // bind_stack.cpp

namespace {

// The forward's arguments from arrays: x (rows, I), weights (G*H, I) and (G*H, H).
template <typename T>
LayerForward<T> forward_args(CellKind cell, long steps, long batch, const Array<T>& x,
                             const Optional<T>& h0, const Optional<T>& c0, const Array<T>& w_ih,
                             const Array<T>& w_hh, const Optional<T>& b_ih, const Optional<T>& b_hh,
                             const Optional<T>& w_hr, const Sizes& batch_sizes) {
  LayerForward<T> a{};
  a.cell = cell;
  a.steps = steps;
  a.batch = batch;
  a.input = w_ih.shape(1);
  a.hidden = w_hh.shape(0) / gate_count(cell);
  a.proj = w_hr ? w_hr->shape(0) : 0;
  a.w_hr = ptr(w_hr);
  a.batch_sizes = ptr(batch_sizes);
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
py::tuple layer_forward_py(const std::string& cell_name, long steps, long batch, const Array<T>& x,
                           const Optional<T>& h0, const Optional<T>& c0, const Array<T>& w_ih,
                           const Array<T>& w_hh, const Optional<T>& b_ih, const Optional<T>& b_hh,
                           const Optional<T>& w_hr, const Sizes& batch_sizes, bool training) {
  const CellKind cell = parse_cell(cell_name);
  LayerForward<T> a =
      forward_args(cell, steps, batch, x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, batch_sizes);
  const long rows = x.shape(0), H = a.hidden, O = a.state(), S = saved_columns(cell, H, a.proj);
  Array<T> y = new_array<T>({rows, O}), h_n = new_array<T>({batch, O});
  Optional<T> c_n, saved;
  if (cell == CellKind::lstm) c_n = new_array<T>({batch, H});
  if (training && S > 0) saved = new_array<T>({rows, S});
  a.y = y.mutable_data();
  a.h_n = h_n.mutable_data();
  a.c_n = mutable_ptr(c_n);
  a.saved = mutable_ptr(saved);
  {
    py::gil_scoped_release release;
    layer_forward<T>(a);
  }
  return py::make_tuple(y, h_n, c_n, saved);
}

template <typename T>
py::tuple layer_backward_py(const std::string& cell_name, long steps, long batch,
                            const Array<T>& x, const Optional<T>& h0, const Optional<T>& c0,
                            const Array<T>& w_ih, const Array<T>& w_hh, const Optional<T>& b_ih,
                            const Optional<T>& b_hh, const Optional<T>& w_hr,
                            const Sizes& batch_sizes, const Array<T>& y, const Optional<T>& saved,
                            const Optional<T>& dy, const Optional<T>& dh_n,
                            const Optional<T>& dc_n) {
  const CellKind cell = parse_cell(cell_name);
  LayerForward<T> a =
      forward_args(cell, steps, batch, x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, batch_sizes);
  a.y = const_cast<T*>(y.data());
  a.saved = const_cast<T*>(ptr(saved));
  const long rows = x.shape(0), I = a.input, H = a.hidden, O = a.state(), G = w_hh.shape(0);
  Array<T> dx = new_array<T>({rows, I}), dh0 = new_array<T>({batch, O}), dw_ih = new_array<T>({G, I}),
           dw_hh = new_array<T>({G, O});
  Optional<T> dc0, db_ih, db_hh, dw_hr;
  if (cell == CellKind::lstm) dc0 = new_array<T>({batch, H});
  if (w_hr) dw_hr = new_array<T>({O, H});
  if (b_ih) db_ih = new_array<T>({G});
  if (b_hh) db_hh = new_array<T>({G});
  LayerBackward<T> g{};
  g.fwd = &a;
  g.dy = ptr(dy);
  g.dh_n = ptr(dh_n);
  g.dc_n = ptr(dc_n);
  g.dx = dx.mutable_data();
  g.dh0 = dh0.mutable_data();
  g.dc0 = mutable_ptr(dc0);
  g.dw_ih = dw_ih.mutable_data();
  g.dw_hh = dw_hh.mutable_data();
  g.db_ih = mutable_ptr(db_ih);
  g.db_hh = mutable_ptr(db_hh);
  g.dw_hr = mutable_ptr(dw_hr);
  {
    py::gil_scoped_release release;
    layer_backward<T>(g);
  }
  return py::make_tuple(dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, dw_hr);
}

}  // namespace

void bind_tree(py::module_& m);  // bind_tree.cpp

PYBIND11_MODULE(_C, m) {
  m.doc() = "fastrnn's compiled kernels; use the fastrnn package, which checks the arguments.";
  bind_tree(m);
  m.def("layer_forward", &layer_forward_py<float>);
  m.def("layer_forward", &layer_forward_py<double>);
  m.def("layer_backward", &layer_backward_py<float>);
  m.def("layer_backward", &layer_backward_py<double>);
  m.def("set_num_threads", &set_num_threads);
  m.def("get_num_threads", &get_num_threads);
  m.def("release_scratch", [] {
    pack_release();
    scratch_release();
  }, "Free the scratch blocks and packed weights kept between calls.");
  m.def("isa", &isa_current, "The instruction set the kernels run with.");
  m.def("isa_supported", &isa_supported, "Instruction sets available here, best first.");
  m.def("set_isa", &isa_select, "Select an instruction set by name, or 'auto'.");
  m.def("blas_info", &blas_info, "The BLAS the kernels call, and its configuration.");
  m.def("core_round_trip_ns", [](long rounds) {
    if (rounds < 1) throw std::invalid_argument("rounds must be >= 1");
    py::gil_scoped_release release;
    return core_round_trip_ns(rounds);
  }, "Mean ns for a two-thread region's threads to signal each other and back (NaN on one).");
  bind_stack(m);
}
