// mfuse: FlowAmplify, CUDA path. The same arithmetic as Forward_cpu /
// Backward_cpu (each sum in the same order), in fewer passes over memory:
// the gate in one pass over the source, the product in one pass over the
// features; backward one pass over the features (and, for the source, one
// over the source).
#include <algorithm>
#include <vector>

#include "caffe/layers/flow_amplify_layer.hpp"
#include "caffe/util/math_functions.hpp"
#include "caffe/util/mfuse_lanes.cuh"

namespace caffe {

namespace {

const int kThreads = 256;
// The gate kernel: at most this many gate columns per block, source columns
// per staged tile, and bytes of shared memory (no opt-in needed).
const int kGateMaxCols = 256;
const int kGateMaxTileCols = 1024;
const int kGateSharedBytes = 48 * 1024;
// Source loads in flight per thread in the gate kernel.
const int kGateLoads = 8;
// The feature-gradient kernel with the gate gradient: channels per thread
// (all their loads in flight before the first store).
const int kChannelsPerThread = 4;

// One block per (n, gate row oy, chunk of up to out_cols gate columns):
// gate[n][oy][ox] = beta + alpha * sum_ky wy[oy][ky] *
//     (sum_kx wx[ox][kx] * min(|source[n][:][ky][kx]|, clip_max)),
// the inner sums first (the CPU's resize along x), then the outer ones (its
// resize along y), each over increasing k. The magnitudes of up to
// tile_rows x tile_cols source pixels are staged in shared memory at a time
// (coalesced reads, each source pixel read once per gate row reading it),
// rows padded by one element: the inner sums run with the row index fastest
// across threads, so a warp reads distinct banks.
template <typename Dtype>
__global__ void FlowAmplifyGate(const int channels, const int src_h,
    const int src_w, const int height, const int width, const int col_chunks,
    const int out_cols, const int tile_rows, const int tile_cols,
    const Dtype clip_max, const Dtype* wy, const int* wy_range,
    const Dtype* wx, const int* wx_range, const Dtype alpha,
    const Dtype beta, const Dtype* source, Dtype* gate) {
  extern __shared__ __align__(16) unsigned char gate_shared[];
  Dtype* tile = reinterpret_cast<Dtype*>(gate_shared);  // rows x (cols + 1)
  Dtype* rx = tile + tile_rows * (tile_cols + 1);       // rows x ow
  Dtype* acc = rx + tile_rows * out_cols;               // ow
  __shared__ int columns[2];
  int b = blockIdx.x;
  const int chunk = b % col_chunks;
  b /= col_chunks;
  const int oy = b % height, n = b / height;
  const int ox0 = chunk * out_cols;
  const int ow = min(out_cols, width - ox0);
  if (threadIdx.x == 0) {
    columns[0] = src_w;
    columns[1] = 0;
  }
  __syncthreads();
  for (int o = threadIdx.x; o < ow; o += blockDim.x) {
    atomicMin(&columns[0], wx_range[2 * (ox0 + o)]);
    atomicMax(&columns[1], wx_range[2 * (ox0 + o) + 1]);
    acc[o] = 0;
  }
  __syncthreads();
  const int kx_lo = columns[0], kx_hi = columns[1];
  const int plane = src_h * src_w;
  const Dtype* s = source + static_cast<size_t>(n) * channels * plane;
  for (int ky0 = wy_range[2 * oy]; ky0 < wy_range[2 * oy + 1];
       ky0 += tile_rows) {
    const int rows = min(tile_rows, wy_range[2 * oy + 1] - ky0);
    for (int i = threadIdx.x; i < rows * ow; i += blockDim.x) rx[i] = 0;
    for (int x0 = kx_lo; x0 < kx_hi; x0 += tile_cols) {
      const int cols = min(tile_cols, kx_hi - x0);
      __syncthreads();  // rx zeroed; the previous tile fully read
      // kGateLoads loads in flight per thread before the first store.
      for (int i0 = threadIdx.x; i0 < rows * cols;
           i0 += kGateLoads * blockDim.x) {
        Dtype m[kGateLoads] = {0};
        if (channels == 1) {
#pragma unroll
          for (int u = 0; u < kGateLoads; ++u) {
            const int i = i0 + u * blockDim.x;
            if (i < rows * cols) {
              m[u] = __ldg(s + (ky0 + i / cols) * src_w + x0 + i % cols);
            }
          }
        } else {
          Dtype y[kGateLoads] = {0};
#pragma unroll
          for (int u = 0; u < kGateLoads; ++u) {
            const int i = i0 + u * blockDim.x;
            if (i < rows * cols) {
              const int p = (ky0 + i / cols) * src_w + x0 + i % cols;
              m[u] = __ldg(s + p);
              y[u] = __ldg(s + plane + p);
            }
          }
#pragma unroll
          for (int u = 0; u < kGateLoads; ++u) {
            m[u] = sqrt(m[u] * m[u] + y[u] * y[u]);
          }
        }
#pragma unroll
        for (int u = 0; u < kGateLoads; ++u) {
          const int i = i0 + u * blockDim.x;
          if (i < rows * cols) {
            tile[i + i / cols] =
                (clip_max > 0 && m[u] > clip_max) ? clip_max : m[u];
          }
        }
      }
      __syncthreads();
      for (int i = threadIdx.x; i < rows * ow; i += blockDim.x) {
        const int r = i % rows, o = i / rows, ox = ox0 + o;
        const int k_end = min(wx_range[2 * ox + 1], x0 + cols);
        const Dtype* w_row = wx + ox * src_w;
        const Dtype* t_row = tile + r * (cols + 1) - x0;
        Dtype sum = rx[r * ow + o];
        for (int kx = max(wx_range[2 * ox], x0); kx < k_end; ++kx) {
          sum += w_row[kx] * t_row[kx];
        }
        rx[r * ow + o] = sum;
      }
    }
    __syncthreads();
    const Dtype* wy_row = wy + oy * src_h + ky0;
    for (int o = threadIdx.x; o < ow; o += blockDim.x) {
      Dtype sum = acc[o];
      for (int r = 0; r < rows; ++r) {
        sum += wy_row[r] * rx[r * ow + o];
      }
      acc[o] = sum;
    }
    __syncthreads();
  }
  for (int o = threadIdx.x; o < ow; o += blockDim.x) {
    gate[(n * height + oy) * width + ox0 + o] = beta + alpha * acc[o];
  }
}

// mean[n] = sum_p gate[n][p] / plane (one thread per sample: planes are small).
template <typename Dtype>
__global__ void FlowAmplifyGateMean(const int num, const int plane,
    const Dtype* gate, Dtype* mean) {
  CUDA_KERNEL_LOOP(n, num) {
    Dtype sum = 0;
    for (int p = 0; p < plane; ++p) {
      sum += gate[n * plane + p];
    }
    mean[n] = sum / plane;
  }
}

template <typename Dtype>
__global__ void FlowAmplifyDivideByMean(const int count, const int plane,
    const Dtype* mean, Dtype* gate) {
  CUDA_KERNEL_LOOP(index, count) {
    gate[index] /= mean[index / plane];
  }
}

// out = in * gate[n][p] over vectors of L lanes (plane: vectors per channel),
// and the copy of in when asked (in-place use): the forward product, and the
// feature gradient without the gate's.
template <typename Dtype, int L>
__global__ void FlowAmplifyScale(const int count, const int channels,
    const int plane, const Lanes<Dtype, L>* in, const Lanes<Dtype, L>* gate,
    Lanes<Dtype, L>* out, Lanes<Dtype, L>* copy) {
  CUDA_KERNEL_LOOP(index, count) {
    const int p = index % plane, n = index / plane / channels;
    const Lanes<Dtype, L> x = in[index];  // read before an in-place write
    const Lanes<Dtype, L> g = gate[n * plane + p];
    if (copy) copy[index] = x;
    Lanes<Dtype, L> y;
#pragma unroll
    for (int l = 0; l < L; ++l) y.v[l] = x.v[l] * g.v[l];
    out[index] = y;
  }
}

template <typename Dtype>
void Scale(const int count, const int channels, const int plane,
    const Dtype* in, const Dtype* gate, Dtype* out, Dtype* copy) {
  const int kL = WideLanes<Dtype>::kL;
  if (plane % kL == 0) {
    typedef Lanes<Dtype, WideLanes<Dtype>::kL> Wide;
    // NOLINT_NEXT_LINE(whitespace/operators)
    FlowAmplifyScale<Dtype, WideLanes<Dtype>::kL><<<
        CAFFE_GET_BLOCKS(count / kL), CAFFE_CUDA_NUM_THREADS>>>(count / kL,
        channels, plane / kL, reinterpret_cast<const Wide*>(in),
        reinterpret_cast<const Wide*>(gate), reinterpret_cast<Wide*>(out),
        reinterpret_cast<Wide*>(copy));
  } else {
    typedef Lanes<Dtype, 1> One;
    // NOLINT_NEXT_LINE(whitespace/operators)
    FlowAmplifyScale<Dtype, 1><<<CAFFE_GET_BLOCKS(count),
        CAFFE_CUDA_NUM_THREADS>>>(count, channels, plane,
        reinterpret_cast<const One*>(in), reinterpret_cast<const One*>(gate),
        reinterpret_cast<One*>(out), reinterpret_cast<One*>(copy));
  }
  CUDA_POST_KERNEL_CHECK;
}

// With the gate gradient: one block per (n, group of channels_per_block
// channels); kThreads threads as subs x P (P = min(plane, kThreads) vectors
// of the plane, subs threads per vector, splitting the group's channels).
// feat_diff = top_diff * gate (when asked) and
// partial[g][n][p] = sum over the group's channels of top_diff * feat.
template <typename Dtype, int L>
__global__ void FlowAmplifyBackwardGate(const int num, const int channels,
    const int plane, const int groups, const int channels_per_block,
    const Lanes<Dtype, L>* top_diff, const Lanes<Dtype, L>* feat,
    const Lanes<Dtype, L>* gate, Lanes<Dtype, L>* feat_diff,
    Lanes<Dtype, L>* partial) {
  __shared__ Lanes<Dtype, L> sums[kThreads];
  const int group = blockIdx.x % groups, n = blockIdx.x / groups;
  const int c_begin = group * channels_per_block;
  const int c_end = min(channels, c_begin + channels_per_block);
  const int P = min(plane, kThreads), subs = kThreads / P;
  const int lane = threadIdx.x % P, sub = threadIdx.x / P;
  for (int p0 = 0; p0 < plane; p0 += P) {
    const int p = p0 + lane;
    Lanes<Dtype, L> acc;
#pragma unroll
    for (int l = 0; l < L; ++l) acc.v[l] = 0;
    if (sub < subs && p < plane) {
      const Lanes<Dtype, L> g = gate[n * plane + p];
      // Every element is read before it is written (in place: top_diff ==
      // feat_diff), by this thread alone.
      for (int c0 = c_begin + sub; c0 < c_end;
           c0 += kChannelsPerThread * subs) {
        Lanes<Dtype, L> d[kChannelsPerThread], x[kChannelsPerThread];
#pragma unroll
        for (int u = 0; u < kChannelsPerThread; ++u) {
          const int c = c0 + u * subs;
          if (c < c_end) {
            const int i = (n * channels + c) * plane + p;
            d[u] = top_diff[i];
            x[u] = feat[i];
          }
        }
#pragma unroll
        for (int u = 0; u < kChannelsPerThread; ++u) {
          const int c = c0 + u * subs;
          if (c < c_end) {
            Lanes<Dtype, L> dx;
#pragma unroll
            for (int l = 0; l < L; ++l) {
              dx.v[l] = d[u].v[l] * g.v[l];
              acc.v[l] += d[u].v[l] * x[u].v[l];
            }
            if (feat_diff) {
              feat_diff[(n * channels + c) * plane + p] = dx;
            }
          }
        }
      }
    }
    sums[threadIdx.x] = acc;
    __syncthreads();
    if (sub == 0 && p < plane) {
      for (int j = 1; j < subs; ++j) {
#pragma unroll
        for (int l = 0; l < L; ++l) acc.v[l] += sums[j * P + lane].v[l];
      }
      partial[(group * num + n) * plane + p] = acc;
    }
    __syncthreads();
  }
}

// gate_diff[i] = sum_g partial[g][i], in increasing g.
template <typename Dtype>
__global__ void FlowAmplifySumPartials(const int count, const int groups,
    const Dtype* partial, Dtype* gate_diff) {
  CUDA_KERNEL_LOOP(index, count) {
    Dtype sum = 0;
    for (int g = 0; g < groups; ++g) {
      sum += partial[g * count + index];
    }
    gate_diff[index] = sum;
  }
}

// dot[n] = sum_p gate_diff[n][p] * gate[n][p] / plane.
template <typename Dtype>
__global__ void FlowAmplifyMeanDot(const int num, const int plane,
    const Dtype* gate_diff, const Dtype* gate, Dtype* dot) {
  CUDA_KERNEL_LOOP(n, num) {
    Dtype sum = 0;
    for (int p = 0; p < plane; ++p) {
      sum += gate_diff[n * plane + p] * gate[n * plane + p];
    }
    dot[n] = sum / plane;
  }
}

template <typename Dtype>
__global__ void FlowAmplifyMeanBackward(const int count, const int plane,
    const Dtype* dot, const Dtype* mean, Dtype* gate_diff) {
  CUDA_KERNEL_LOOP(index, count) {
    const int n = index / plane;
    gate_diff[index] = (gate_diff[index] - dot[n]) / mean[n];
  }
}

// One thread per source pixel (n, ky, kx): the adjoint of the resize (scale
// folded in) applied to gate_diff, as the CPU's two passes compute it (along
// y: alpha * sum_oy wy_t[ky][oy] gate_diff[oy][ox], then along x:
// sum_ox wx_t[kx][ox] * that), then through the clip and the norm.
template <typename Dtype>
__global__ void FlowAmplifySourceBackward(const int count,
    const int channels, const int src_h, const int src_w, const int height,
    const int width, const Dtype* wy_t, const int* wy_t_range,
    const Dtype* wx_t, const int* wx_t_range, const Dtype alpha,
    const Dtype clip_max, const Dtype* gate_diff, const Dtype* source,
    Dtype* source_diff) {
  CUDA_KERNEL_LOOP(index, count) {
    const int kx = index % src_w;
    const int nky = index / src_w;
    const int ky = nky % src_h, n = nky / src_h;
    const Dtype* gd = gate_diff + n * height * width;
    const Dtype* wy_row = wy_t + ky * height;
    const Dtype* wx_row = wx_t + kx * width;
    const int oy_begin = wy_t_range[2 * ky], oy_end = wy_t_range[2 * ky + 1];
    Dtype dm = 0;
    for (int ox = wx_t_range[2 * kx]; ox < wx_t_range[2 * kx + 1]; ++ox) {
      Dtype sum = 0;
      for (int oy = oy_begin; oy < oy_end; ++oy) {
        sum += wy_row[oy] * gd[oy * width + ox];
      }
      dm += wx_row[ox] * (alpha * sum);
    }
    const int plane = src_h * src_w;
    const int p = index - n * plane;
    const Dtype* s = source + n * channels * plane + p;
    Dtype* sd = source_diff + n * channels * plane + p;
    if (channels == 1) {
      sd[0] = (clip_max > 0 && s[0] > clip_max) ? Dtype(0) : dm;
    } else {
      const Dtype x = s[0], y = s[plane];
      const Dtype m = sqrt(x * x + y * y);
      dm = (m == 0 || (clip_max > 0 && m > clip_max)) ? Dtype(0) : dm / m;
      sd[0] = dm * x;
      sd[plane] = dm * y;
    }
  }
}

}  // namespace

template <typename Dtype>
void FlowAmplifyLayer<Dtype>::Forward_gpu(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  const int plane = height_ * width_;
  const int gate_count = gate_.count();
  Dtype* gate = gate_.mutable_gpu_data();
  {
    const int out_cols = std::min(width_, kGateMaxCols);
    const int col_chunks = (width_ + out_cols - 1) / out_cols;
    const int tile_cols = std::min(source_width_, kGateMaxTileCols);
    const int budget = kGateSharedBytes / sizeof(Dtype);
    const int tile_rows = std::max(1, std::min(gate_rows_,
        (budget - out_cols) / (tile_cols + 1 + out_cols)));
    const size_t shared =
        (tile_rows * (tile_cols + 1 + out_cols) + out_cols) * sizeof(Dtype);
    // NOLINT_NEXT_LINE(whitespace/operators)
    FlowAmplifyGate<Dtype><<<num_ * height_ * col_chunks, kThreads,
        shared>>>(source_channels_, source_height_, source_width_, height_,
        width_, col_chunks, out_cols, tile_rows, tile_cols, clip_max_,
        wy_.gpu_data(), wy_range_.gpu_data(), wx_.gpu_data(),
        wx_range_.gpu_data(), scale_, offset_, bottom[1]->gpu_data(), gate);
    CUDA_POST_KERNEL_CHECK;
  }
  if (normalize_mean_) {
    // NOLINT_NEXT_LINE(whitespace/operators)
    FlowAmplifyGateMean<Dtype><<<CAFFE_GET_BLOCKS(num_),
        CAFFE_CUDA_NUM_THREADS>>>(num_, plane, gate,
        gate_mean_.mutable_gpu_data());
    CUDA_POST_KERNEL_CHECK;
    CheckMeans(bottom);  // copies the N means to the host
    // NOLINT_NEXT_LINE(whitespace/operators)
    FlowAmplifyDivideByMean<Dtype><<<CAFFE_GET_BLOCKS(gate_count),
        CAFFE_CUDA_NUM_THREADS>>>(gate_count, plane, gate_mean_.gpu_data(),
        gate);
    CUDA_POST_KERNEL_CHECK;
  }
  Scale(bottom[0]->count(), channels_, plane, bottom[0]->gpu_data(),
      gate_.gpu_data(), top[0]->mutable_gpu_data(),
      in_place_ ? feat_copy_.mutable_gpu_data() : NULL);
}

template <typename Dtype>
void FlowAmplifyLayer<Dtype>::Backward_gpu(const vector<Blob<Dtype>*>& top,
    const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {
  if (!propagate_down[0] && !propagate_down[1]) {
    return;
  }
  const int plane = height_ * width_;
  Dtype* feat_diff = propagate_down[0] ? bottom[0]->mutable_gpu_diff() : NULL;
  if (!propagate_down[1]) {
    Scale(bottom[0]->count(), channels_, plane, top[0]->gpu_diff(),
        gate_.gpu_data(), feat_diff, static_cast<Dtype*>(NULL));
    return;
  }
  const Dtype* feat =
      in_place_ ? feat_copy_.gpu_data() : bottom[0]->gpu_data();
  const int gate_count = gate_.count();
  const int kL = WideLanes<Dtype>::kL;
  const int lanes = plane % kL == 0 ? kL : 1;
  const int plane_v = plane / lanes;
  const int channels_per_block =
      kThreads / std::min(plane_v, kThreads) * kChannelsPerThread;
  const int groups =
      (channels_ + channels_per_block - 1) / channels_per_block;
  gate_partials_.Reshape(vector<int>{groups, num_, plane});
  const Dtype* top_diff = top[0]->gpu_diff();
  Dtype* partials = gate_partials_.mutable_gpu_data();
  if (lanes == kL) {
    typedef Lanes<Dtype, WideLanes<Dtype>::kL> Wide;
    // NOLINT_NEXT_LINE(whitespace/operators)
    FlowAmplifyBackwardGate<Dtype, WideLanes<Dtype>::kL><<<num_ * groups,
        kThreads>>>(num_, channels_, plane_v, groups, channels_per_block,
        reinterpret_cast<const Wide*>(top_diff),
        reinterpret_cast<const Wide*>(feat),
        reinterpret_cast<const Wide*>(gate_.gpu_data()),
        reinterpret_cast<Wide*>(feat_diff), reinterpret_cast<Wide*>(partials));
  } else {
    typedef Lanes<Dtype, 1> One;
    // NOLINT_NEXT_LINE(whitespace/operators)
    FlowAmplifyBackwardGate<Dtype, 1><<<num_ * groups, kThreads>>>(num_,
        channels_, plane_v, groups, channels_per_block,
        reinterpret_cast<const One*>(top_diff),
        reinterpret_cast<const One*>(feat),
        reinterpret_cast<const One*>(gate_.gpu_data()),
        reinterpret_cast<One*>(feat_diff), reinterpret_cast<One*>(partials));
  }
  CUDA_POST_KERNEL_CHECK;
  Dtype* gate_diff = gate_.mutable_gpu_diff();
  // NOLINT_NEXT_LINE(whitespace/operators)
  FlowAmplifySumPartials<Dtype><<<CAFFE_GET_BLOCKS(gate_count),
      CAFFE_CUDA_NUM_THREADS>>>(gate_count, groups, partials, gate_diff);
  CUDA_POST_KERNEL_CHECK;
  if (normalize_mean_) {
    // NOLINT_NEXT_LINE(whitespace/operators)
    FlowAmplifyMeanDot<Dtype><<<CAFFE_GET_BLOCKS(num_),
        CAFFE_CUDA_NUM_THREADS>>>(num_, plane, gate_diff, gate_.gpu_data(),
        dot_.mutable_gpu_data());
    CUDA_POST_KERNEL_CHECK;
    // NOLINT_NEXT_LINE(whitespace/operators)
    FlowAmplifyMeanBackward<Dtype><<<CAFFE_GET_BLOCKS(gate_count),
        CAFFE_CUDA_NUM_THREADS>>>(gate_count, plane, dot_.gpu_data(),
        gate_mean_.gpu_data(), gate_diff);
    CUDA_POST_KERNEL_CHECK;
  }
  const int source_count = num_ * source_height_ * source_width_;
  // NOLINT_NEXT_LINE(whitespace/operators)
  FlowAmplifySourceBackward<Dtype><<<CAFFE_GET_BLOCKS(source_count),
      CAFFE_CUDA_NUM_THREADS>>>(source_count, source_channels_,
      source_height_, source_width_, height_, width_, wy_t_.gpu_data(),
      wy_t_range_.gpu_data(), wx_t_.gpu_data(), wx_t_range_.gpu_data(),
      scale_, clip_max_, gate_diff, bottom[1]->gpu_data(),
      bottom[1]->mutable_gpu_diff());
  CUDA_POST_KERNEL_CHECK;
}

INSTANTIATE_LAYER_GPU_FUNCS(FlowAmplifyLayer);

}  // namespace caffe
