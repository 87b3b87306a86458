// tvm/support/cuda/nvtx.h -- written for webllm_build.
//
// Stands in for the header of the same name that the apache-tvm wheel's
// runtime sources include but do not ship.  The Relax VM and the paged KV
// cache open NVTX profiler ranges (support::NVTXScopedRange) around calls.
// NVTX only exists with CUDA; when TVM_NVTX_ENABLED is 0 (the default, and
// always the case for the wasm runtime) the range is an empty RAII object
// that the optimiser removes entirely.
#ifndef TVM_SUPPORT_CUDA_NVTX_H_
#define TVM_SUPPORT_CUDA_NVTX_H_

#include <string>

#ifndef TVM_NVTX_ENABLED
#define TVM_NVTX_ENABLED 0
#endif

#if TVM_NVTX_ENABLED
#include <nvtx3/nvToolsExt.h>
#endif

namespace tvm {
namespace support {

/*! \brief Pushes an NVTX range on construction and pops it on destruction. */
class NVTXScopedRange {
 public:
  explicit NVTXScopedRange(const char* name) {
#if TVM_NVTX_ENABLED
    nvtxRangePushA(name);
#else
    (void)name;
#endif
  }
  explicit NVTXScopedRange(const std::string& name) : NVTXScopedRange(name.c_str()) {}

  ~NVTXScopedRange() {
#if TVM_NVTX_ENABLED
    nvtxRangePop();
#endif
  }

  // A range must be popped exactly once, by the object that pushed it.
  NVTXScopedRange(const NVTXScopedRange&) = delete;
  NVTXScopedRange(NVTXScopedRange&&) = delete;
  NVTXScopedRange& operator=(const NVTXScopedRange&) = delete;
  NVTXScopedRange& operator=(NVTXScopedRange&&) = delete;
};

#if defined(_MSC_VER)
#define TVM_NVTX_FUNC_SCOPE() ::tvm::support::NVTXScopedRange _tvm_nvtx_func_scope_(__FUNCSIG__)
#else
#define TVM_NVTX_FUNC_SCOPE() \
  ::tvm::support::NVTXScopedRange _tvm_nvtx_func_scope_(__PRETTY_FUNCTION__)
#endif

}  // namespace support
}  // namespace tvm

#endif  // TVM_SUPPORT_CUDA_NVTX_H_
