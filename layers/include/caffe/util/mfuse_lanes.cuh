// mfuse: vector access for the memory-bound kernels of mfuse's layers.
#ifndef CAFFE_UTIL_MFUSE_LANES_CUH_
#define CAFFE_UTIL_MFUSE_LANES_CUH_

namespace caffe {

/**
 * @brief L consecutive values of Dtype, loaded and stored as one access of
 *        L * sizeof(Dtype) bytes (LDG.128 / STG.128 for 16 bytes).
 *
 * A pointer to Dtype reinterpreted as Lanes<Dtype, L>* must be aligned to
 * L * sizeof(Dtype) bytes: a blob's base (cudaMalloc aligns to 256 bytes)
 * plus a multiple of L elements.
 */
template <typename Dtype, int L>
struct alignas(sizeof(Dtype) * L) Lanes {
  Dtype v[L];
};

/// The number of lanes of a 16-byte access: 4 floats, 2 doubles.
template <typename Dtype>
struct WideLanes {
  static const int kL = 16 / sizeof(Dtype);
};

}  // namespace caffe

#endif  // CAFFE_UTIL_MFUSE_LANES_CUH_
