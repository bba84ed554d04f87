// What every binding file shares: the array types it takes and the cell names it parses.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>
#include <stdexcept>
#include <string>

#include "cpu/sequence.h"

namespace fastrnn::bind {

template <typename T>
using Array = pybind11::array_t<T, pybind11::array::c_style>;
template <typename T>
using Optional = std::optional<Array<T>>;
using Sizes = std::optional<pybind11::array_t<long, pybind11::array::c_style>>;

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
