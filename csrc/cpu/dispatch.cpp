// Chooses the instruction set at run time from the CPU's features; FASTRNN_ISA=avx2|base in the
// environment (or fastrnn._C.set_isa) forces a lower one.
#include <atomic>
#include <cstdlib>
#include <stdexcept>
#include <vector>

#include "isa.h"

namespace fastrnn {
namespace {

enum class Isa { base, avx2, avx512 };

const char* name_of(Isa isa) {
  switch (isa) {
    case Isa::avx512: return "avx512";
    case Isa::avx2: return "avx2";
    default: return "base";
  }
}

std::vector<Isa> supported() {
  std::vector<Isa> out;
#if defined(FASTRNN_X86_ISAS)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl"))
    out.push_back(Isa::avx512);
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) out.push_back(Isa::avx2);
#endif
  out.push_back(Isa::base);
  return out;
}

Isa parse(const std::string& name) {
  for (Isa isa : supported())
    if (name == name_of(isa)) return isa;
  throw std::invalid_argument("instruction set '" + name + "' is not available here; available: " +
                              isa_supported());
}

Isa initial() {
  const char* env = std::getenv("FASTRNN_ISA");
  if (env && *env && std::string(env) != "auto") return parse(env);
  return supported().front();
}

std::atomic<Isa>& current() {
  static std::atomic<Isa> isa{initial()};
  return isa;
}

}  // namespace

std::string isa_current() { return name_of(current().load()); }

std::string isa_supported() {
  std::string out;
  for (Isa isa : supported()) out += (out.empty() ? "" : ",") + std::string(name_of(isa));
  return out;
}

void isa_select(const std::string& name) {
  current() = name == "auto" ? supported().front() : parse(name);
}

#if defined(FASTRNN_X86_ISAS)
#define FASTRNN_DISPATCH(fn, ...)                              \
  switch (current().load()) {                                  \
    case Isa::avx512: return avx512::fn(__VA_ARGS__);          \
    case Isa::avx2: return avx2::fn(__VA_ARGS__);              \
    default: return base::fn(__VA_ARGS__);                     \
  }
#else
#define FASTRNN_DISPATCH(fn, ...) return base::fn(__VA_ARGS__);
#endif

template <typename T>
void layer_forward(const LayerForward<T>& args) {
  FASTRNN_DISPATCH(layer_forward<T>, args)
}

template <typename T>
void layer_backward(const LayerBackward<T>& args) {
  FASTRNN_DISPATCH(layer_backward<T>, args)
}

template void layer_forward<float>(const LayerForward<float>&);
template void layer_forward<double>(const LayerForward<double>&);
template void layer_backward<float>(const LayerBackward<float>&);
template void layer_backward<double>(const LayerBackward<double>&);

template <typename T>
void tree_forward(const TreeForward<T>& args) {
  FASTRNN_DISPATCH(tree_forward<T>, args)
}

template <typename T>
void tree_backward(const TreeBackward<T>& args) {
  FASTRNN_DISPATCH(tree_backward<T>, args)
}

template void tree_forward<float>(const TreeForward<float>&);
template void tree_forward<double>(const TreeForward<double>&);
template void tree_backward<float>(const TreeBackward<float>&);
template void tree_backward<double>(const TreeBackward<double>&);

}  // namespace fastrnn
