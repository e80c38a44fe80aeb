#include <algorithm>
#include <vector>

#include "caffe/layers/multiplicative_fusion_layer.hpp"
#include "caffe/util/math_functions.hpp"
#include "caffe/util/mfuse_lanes.cuh"

namespace caffe {

namespace {

// Up to this many streams, a thread keeps the activations of its element in
// registers; more streams are re-read from the projections.
const int kCachedStreams = 4;

template <typename Dtype>
__device__ inline Dtype Activate(const Dtype z, const bool relu) {
  return (relu && z < 0) ? Dtype(0) : z;
}

// Vectors each thread of the reorder moves (all loads before the stores).
const int kSwapUnroll = 4;

// out[j][i][:] = in[i][j][:] for A x B runs of R vectors of L lanes; count
// (A * B * R) vectors, kSwapUnroll per thread, blockDim.x apart.
template <typename Dtype, int L>
__global__ void SwapLeadingAxesKernel(const int count, const int A,
    const int B, const int R, const Lanes<Dtype, L>* __restrict__ in,
    Lanes<Dtype, L>* __restrict__ out) {
  const int base = blockIdx.x * blockDim.x * kSwapUnroll + threadIdx.x;
  Lanes<Dtype, L> v[kSwapUnroll];
#pragma unroll
  for (int u = 0; u < kSwapUnroll; ++u) {
    const int index = base + u * blockDim.x;
    if (index < count) {
      const int r = index % R;
      const int ji = index / R;
      const int i = ji % A, j = ji / A;
      v[u] = in[(i * B + j) * R + r];
    }
  }
#pragma unroll
  for (int u = 0; u < kSwapUnroll; ++u) {
    const int index = base + u * blockDim.x;
    if (index < count) out[index] = v[u];
  }
}

template <typename Dtype, int L>
void LaunchSwap(const int count, const int A, const int B, const int R,
    const Dtype* in, Dtype* out) {
  const int per_block = CAFFE_CUDA_NUM_THREADS * kSwapUnroll;
  // NOLINT_NEXT_LINE(whitespace/operators)
  SwapLeadingAxesKernel<Dtype, L><<<(count + per_block - 1) / per_block,
      CAFFE_CUDA_NUM_THREADS>>>(count, A, B, R,
      reinterpret_cast<const Lanes<Dtype, L>*>(in),
      reinterpret_cast<Lanes<Dtype, L>*>(out));
  CUDA_POST_KERNEL_CHECK;
}

// Stream s's projection vector at j, shifted by its bias at channel k;
// streams[0, S) are the projections (K x N x HW), streams[S, 2S) the biases
// (null: the constant bias_value).
template <typename Dtype, int L>
__device__ inline Lanes<Dtype, L> Shifted(Dtype* const* streams, const int S,
    const int s, const int j, const int k, const Dtype bias_value) {
  Lanes<Dtype, L> z = reinterpret_cast<const Lanes<Dtype, L>*>(streams[s])[j];
  const Dtype* bias = streams[S + s];
  const Dtype b = bias ? bias[k] : bias_value;
#pragma unroll
  for (int l = 0; l < L; ++l) z.v[l] += b;
  return z;
}

// ELEMENTWISE: top[n][k][hw] = prod_s act(z_s[n, k, hw] + b_s[k]), over the
// top's vectors (HWv = HW / L per (n, k)); z_s[n, k, hw] is at
// k * stride_k + n * stride_n + hw (vectors: K x N x HWv, or N x K for 2-D).
template <typename Dtype, int L>
__global__ void FusionForward(const int count, const int S, const int K,
    const int HWv, const int stride_k, const int stride_n,
    Dtype* const* streams, const Dtype bias_value, const bool relu,
    Lanes<Dtype, L>* top) {
  CUDA_KERNEL_LOOP(index, count) {
    const int hw = index % HWv;
    const int nk = index / HWv;
    const int k = nk % K, n = nk / K;
    const int j = k * stride_k + n * stride_n + hw;
    Lanes<Dtype, L> product;
#pragma unroll
    for (int l = 0; l < L; ++l) product.v[l] = 1;
    for (int s = 0; s < S; ++s) {
      const Lanes<Dtype, L> z = Shifted<Dtype, L>(streams, S, s, j, k,
                                                  bias_value);
#pragma unroll
      for (int l = 0; l < L; ++l) product.v[l] *= Activate(z.v[l], relu);
    }
    top[index] = product;
  }
}

// DOT: top[n][k] = sum_hw prod_s act(z_s[n, k, hw] + b_s[k]), nk over N x K.
template <typename Dtype>
__global__ void FusionDotForward(const int count, const int S, const int K,
    const int HW, const int stride_k, const int stride_n,
    Dtype* const* streams, const Dtype bias_value, const bool relu,
    Dtype* top) {
  CUDA_KERNEL_LOOP(nk, count) {
    const int k = nk % K, n = nk / K;
    Dtype sum = 0;
    for (int hw = 0; hw < HW; ++hw) {
      const int j = k * stride_k + n * stride_n + hw;
      Dtype product = 1;
      for (int s = 0; s < S; ++s) {
        product *= Activate(Shifted<Dtype, 1>(streams, S, s, j, k,
                                              bias_value).v[0], relu);
      }
      sum += product;
    }
    top[nk] = sum;
  }
}

// In place, z_s <- g * prod_{r != s} act(z_r + b_r) * act'(z_s + b_s), over
// the vectors of N x K x HWv in the top's order (the projections' element at
// k * stride_k + n * stride_n + hw, as in FusionForward), with g the top
// gradient at the element (DOT: at its (n, k)); the same products in the
// same order as Backward_cpu. kCached > 0 (S <= kCached): the activations
// are held in registers (act' = [act > 0] for RELU); 0: any S, the
// projections after s are re-read, as Backward_cpu does.
template <typename Dtype, int L, int kCached>
__global__ void FusionBackward(const int count, const int S, const int K,
    const int HWv, const int stride_k, const int stride_n,
    Dtype* const* streams, const Dtype bias_value, const bool relu,
    const bool dot, const Dtype* top_diff) {
  CUDA_KERNEL_LOOP(top_index, count) {
    const int hw = top_index % HWv;
    const int nk = top_index / HWv;
    const int k = nk % K, n = nk / K;
    const int index = k * stride_k + n * stride_n + hw;
    Lanes<Dtype, L> before;
    if (dot) {
#pragma unroll
      for (int l = 0; l < L; ++l) before.v[l] = top_diff[nk];
    } else {
      before = reinterpret_cast<const Lanes<Dtype, L>*>(top_diff)[top_index];
    }
    if (kCached > 0) {
      Lanes<Dtype, L> a[kCached > 0 ? kCached : 1];
#pragma unroll
      for (int s = 0; s < kCached; ++s) {
        if (s < S) {
          a[s] = Shifted<Dtype, L>(streams, S, s, index, k, bias_value);
#pragma unroll
          for (int l = 0; l < L; ++l) a[s].v[l] = Activate(a[s].v[l], relu);
        }
      }
#pragma unroll
      for (int s = 0; s < kCached; ++s) {
        if (s < S) {
          Lanes<Dtype, L> dz;
#pragma unroll
          for (int l = 0; l < L; ++l) {
            Dtype after = 1;
#pragma unroll
            for (int r = s + 1; r < kCached; ++r) {
              if (r < S) after *= a[r].v[l];
            }
            const Dtype grad = (!relu || a[s].v[l] > 0) ? Dtype(1) : Dtype(0);
            dz.v[l] = before.v[l] * after * grad;
            before.v[l] *= a[s].v[l];
          }
          reinterpret_cast<Lanes<Dtype, L>*>(streams[s])[index] = dz;
        }
      }
    } else {
      for (int s = 0; s < S; ++s) {
        const Lanes<Dtype, L> z = Shifted<Dtype, L>(streams, S, s, index, k,
                                                    bias_value);
        Lanes<Dtype, L> after;
#pragma unroll
        for (int l = 0; l < L; ++l) after.v[l] = 1;
        for (int r = s + 1; r < S; ++r) {
          const Lanes<Dtype, L> zr = Shifted<Dtype, L>(streams, S, r, index,
                                                       k, bias_value);
#pragma unroll
          for (int l = 0; l < L; ++l) after.v[l] *= Activate(zr.v[l], relu);
        }
        Lanes<Dtype, L> dz;
#pragma unroll
        for (int l = 0; l < L; ++l) {
          const Dtype grad = (!relu || z.v[l] > 0) ? Dtype(1) : Dtype(0);
          dz.v[l] = before.v[l] * after.v[l] * grad;
          before.v[l] *= Activate(z.v[l], relu);
        }
        reinterpret_cast<Lanes<Dtype, L>*>(streams[s])[index] = dz;
      }
    }
  }
}

template <typename Dtype, int L>
void LaunchFusionBackward(const int count, const int S, const int K,
    const int HWv, const int stride_k, const int stride_n,
    Dtype* const* streams, const Dtype bias_value, const bool relu,
    const bool dot, const Dtype* top_diff) {
  if (S <= kCachedStreams) {
    // NOLINT_NEXT_LINE(whitespace/operators)
    FusionBackward<Dtype, L, kCachedStreams><<<CAFFE_GET_BLOCKS(count),
        CAFFE_CUDA_NUM_THREADS>>>(count, S, K, HWv, stride_k, stride_n,
        streams, bias_value, relu, dot, top_diff);
  } else {
    // NOLINT_NEXT_LINE(whitespace/operators)
    FusionBackward<Dtype, L, 0><<<CAFFE_GET_BLOCKS(count),
        CAFFE_CUDA_NUM_THREADS>>>(count, S, K, HWv, stride_k, stride_n,
        streams, bias_value, relu, dot, top_diff);
  }
  CUDA_POST_KERNEL_CHECK;
}

}  // namespace

template <typename Dtype>
void caffe_gpu_swap_leading_axes(int A, int B, int L, const Dtype* in,
    Dtype* out) {
  const int kL = WideLanes<Dtype>::kL;
  if (L % kL == 0) {  // 16-byte accesses
    LaunchSwap<Dtype, WideLanes<Dtype>::kL>(A * B * (L / kL), A, B, L / kL,
                                           in, out);
  } else {
    LaunchSwap<Dtype, 1>(A * B * L, A, B, L, in, out);
  }
}

template void caffe_gpu_swap_leading_axes<float>(int A, int B, int L,
    const float* in, float* out);
template void caffe_gpu_swap_leading_axes<double>(int A, int B, int L,
    const double* in, double* out);

template <typename Dtype>
Dtype** MultiplicativeFusionLayer<Dtype>::DevicePointers() {
  vector<Dtype*> pointers(2 * num_streams_, NULL);
  for (int s = 0; s < num_streams_; ++s) {
    pointers[s] = projections_[s]->mutable_gpu_data();
    if (bias_learnable_) {
      pointers[num_streams_ + s] =
          const_cast<Dtype*>(this->blobs_[bias_index(s)]->gpu_data());
    }
  }
  const size_t bytes = pointers.size() * sizeof(Dtype*);
  if (!device_pointers_ || device_pointers_->size() != bytes) {
    device_pointers_.reset(new SyncedMemory(bytes));
    host_pointers_.clear();
  }
  if (pointers != host_pointers_) {  // upload only when a buffer moved
    Dtype** host = static_cast<Dtype**>(device_pointers_->mutable_cpu_data());
    std::copy(pointers.begin(), pointers.end(), host);
    host_pointers_ = pointers;
  }
  return static_cast<Dtype**>(const_cast<void*>(device_pointers_->gpu_data()));
}

template <typename Dtype>
void MultiplicativeFusionLayer<Dtype>::Forward_gpu(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  Project(bottom, top, true);
  const int K = num_output_;
  const int HW = spatial_dim_;
  const int stride_k = projection_stride_k(), stride_n = projection_stride_n();
  Dtype** streams = DevicePointers();
  Dtype* top_data = top[0]->mutable_gpu_data();
  if (dot_) {
    const int count = num_ * K;
    // NOLINT_NEXT_LINE(whitespace/operators)
    FusionDotForward<Dtype><<<CAFFE_GET_BLOCKS(count),
        CAFFE_CUDA_NUM_THREADS>>>(count, num_streams_, K, HW, stride_k,
        stride_n, streams, bias_value_, relu_, top_data);
  } else if (HW % WideLanes<Dtype>::kL == 0) {
    const int kL = WideLanes<Dtype>::kL;
    const int count = num_ * K * HW / kL;
    // NOLINT_NEXT_LINE(whitespace/operators)
    FusionForward<Dtype, WideLanes<Dtype>::kL><<<CAFFE_GET_BLOCKS(count),
        CAFFE_CUDA_NUM_THREADS>>>(count, num_streams_, K, HW / kL,
        stride_k / kL, stride_n / kL, streams, bias_value_, relu_,
        reinterpret_cast<Lanes<Dtype, WideLanes<Dtype>::kL>*>(top_data));
  } else {
    const int count = num_ * K * HW;
    // NOLINT_NEXT_LINE(whitespace/operators)
    FusionForward<Dtype, 1><<<CAFFE_GET_BLOCKS(count),
        CAFFE_CUDA_NUM_THREADS>>>(count, num_streams_, K, HW, stride_k,
        stride_n, streams, bias_value_, relu_,
        reinterpret_cast<Lanes<Dtype, 1>*>(top_data));
  }
  CUDA_POST_KERNEL_CHECK;
  projections_valid_ = true;
}

template <typename Dtype>
void MultiplicativeFusionLayer<Dtype>::Backward_gpu(
    const vector<Blob<Dtype>*>& top, const vector<bool>& propagate_down,
    const vector<Blob<Dtype>*>& bottom) {
  BeginBackward();
  const int K = num_output_;
  const int HW = spatial_dim_;
  const int stride_k = projection_stride_k(), stride_n = projection_stride_n();
  Dtype** streams = DevicePointers();
  const Dtype* top_diff = top[0]->gpu_diff();
  if (HW % WideLanes<Dtype>::kL == 0) {
    const int kL = WideLanes<Dtype>::kL;
    LaunchFusionBackward<Dtype, WideLanes<Dtype>::kL>(num_ * K * HW / kL,
        num_streams_, K, HW / kL, stride_k / kL, stride_n / kL, streams,
        bias_value_, relu_, dot_, top_diff);
  } else {
    LaunchFusionBackward<Dtype, 1>(num_ * K * HW, num_streams_, K, HW,
        stride_k, stride_n, streams, bias_value_, relu_, dot_, top_diff);
  }
  BackwardGemms(propagate_down, bottom, true);
}

INSTANTIATE_LAYER_GPU_FUNCS(MultiplicativeFusionLayer);

}  // namespace caffe
