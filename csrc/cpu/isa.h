// The instruction sets the kernel sources are compiled for, and run-time selection among them.
// Each kernel source (sequence.cpp, ...) is compiled once per set into namespace
// fastrnn::<set>, with FASTRNN_ISA naming it and FASTRNN_SIMD_BYTES its vector width.
#pragma once

#include <string>

#include "sequence.h"
#include "tree.h"

#ifndef FASTRNN_ISA
#define FASTRNN_ISA base
#endif

namespace fastrnn {

// Names, best first, of the sets this build has and this CPU can execute.
std::string isa_current();
std::string isa_supported();  // comma-separated, best first
// Use `name` (one of isa_supported(), or "auto" for the best); throws if it cannot run here.
void isa_select(const std::string& name);

#define FASTRNN_DECLARE_ISA_KERNELS(ns)                                  \
  namespace ns {                                                       \
  template <typename T>                                                \
  void layer_forward(const LayerForward<T>&);                          \
  template <typename T>                                                \
  void layer_backward(const LayerBackward<T>&);                        \
  }

FASTRNN_DECLARE_ISA_KERNELS(base)
#if defined(FASTRNN_X86_ISAS)
FASTRNN_DECLARE_ISA_KERNELS(avx2)
FASTRNN_DECLARE_ISA_KERNELS(avx512)
#endif

#define FASTRNN_DECLARE_ISA_TREE_KERNELS(ns)                             \
  namespace ns {                                                       \
  template <typename T>                                                \
  void tree_forward(const TreeForward<T>&);                            \
  template <typename T>                                                \
  void tree_backward(const TreeBackward<T>&);                          \
  }

FASTRNN_DECLARE_ISA_TREE_KERNELS(base)
#if defined(FASTRNN_X86_ISAS)
FASTRNN_DECLARE_ISA_TREE_KERNELS(avx2)
FASTRNN_DECLARE_ISA_TREE_KERNELS(avx512)
#endif

}  // namespace fastrnn
