// What every binding file shares: the array types it takes and the cell names it parses.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "cpu/buffer.h"
#include "cpu/sequence.h"

namespace fastrnn::bind {

template <typename T>
using Array = pybind11::array_t<T, pybind11::array::c_style>;
template <typename T>
using Optional = std::optional<Array<T>>;
using Sizes = std::optional<pybind11::array_t<long, pybind11::array::c_style>>;

// A new uninitialized array for a kernel's output. A large one takes its memory from the scratch
// cache (buffer.h) and gives it back when the array dies: fresh pages cost a page fault each on
// first write, and a training loop would otherwise fault in its outputs and saved state on every
// call (LSTM T=20 B=256 H=1024: ~100 ms of kernel time per 900 ms forward).
template <typename T>
Array<T> new_array(const std::vector<pybind11::ssize_t>& shape) {
  std::size_t bytes = sizeof(T);
  for (pybind11::ssize_t d : shape) bytes *= std::size_t(d);
  if (!scratch_cached(bytes)) return Array<T>(shape);
  struct Block {
    void* p;
    std::size_t bytes;
  };
  auto block = std::make_unique<Block>(Block{scratch_take(bytes), bytes});
  T* data = static_cast<T*>(block->p);
  pybind11::capsule owner(block.get(), [](void* o) {
    auto* b = static_cast<Block*>(o);
    scratch_give(b->p, b->bytes);
    delete b;
  });
  block.release();  // the capsule owns it now
  return Array<T>(shape, data, owner);
}

inline CellKind parse_cell(const std::string& name) {
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
T* mutable_ptr(Optional<T>& a) {
  return a ? a->mutable_data() : nullptr;
}

inline const long* ptr(const Sizes& a) { return a ? a->data() : nullptr; }

}  // namespace fastrnn::bind
