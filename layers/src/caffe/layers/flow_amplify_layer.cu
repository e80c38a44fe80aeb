// mfuse: FlowAmplify, CUDA path (same steps as Forward_cpu / Backward_cpu).
#include <vector>

#include "caffe/layers/flow_amplify_layer.hpp"
#include "caffe/util/math_functions.hpp"

namespace caffe {

// magnitude[n][p] = min(|source[n][:][p]|, clip_max) (clip_max > 0).
template <typename Dtype>
__global__ void FlowAmplifyMagnitude(const int count, const int channels,
    const int plane, const Dtype clip_max, const Dtype* source,
    Dtype* magnitude) {
  CUDA_KERNEL_LOOP(index, count) {
    const int n = index / plane, p = index % plane;
    const Dtype* s = source + n * channels * plane + p;
    Dtype m = s[0];
    if (channels == 2) {
      m = sqrt(m * m + s[plane] * s[plane]);
    }
    if (clip_max > 0 && m > clip_max) {
      m = clip_max;
    }
    magnitude[index] = m;
  }
}

// out[r][o] = sum_k w[o][k] in[r][k] over the non-zero range of row o of w.
template <typename Dtype>
__global__ void FlowAmplifyResizeLastAxis(const int count, const int in_len,
    const int out_len, const Dtype* w, const int* range, const Dtype* in,
    Dtype* out) {
  CUDA_KERNEL_LOOP(index, count) {
    const int r = index / out_len, o = index % out_len;
    const Dtype* w_row = w + o * in_len;
    const Dtype* in_row = in + r * in_len;
    Dtype sum = 0;
    for (int k = range[2 * o]; k < range[2 * o + 1]; ++k) {
      sum += w_row[k] * in_row[k];
    }
    out[index] = sum;
  }
}

// out[n][o][c] = beta + alpha * sum_k w[o][k] in[n][k][c].
template <typename Dtype>
__global__ void FlowAmplifyResizeMiddleAxis(const int count, const int in_len,
    const int out_len, const int cols, const Dtype* w, const int* range,
    const Dtype alpha, const Dtype beta, const Dtype* in, Dtype* out) {
  CUDA_KERNEL_LOOP(index, count) {
    const int c = index % cols;
    const int o = (index / cols) % out_len;
    const int n = index / cols / out_len;
    const Dtype* w_row = w + o * in_len;
    Dtype sum = 0;
    for (int k = range[2 * o]; k < range[2 * o + 1]; ++k) {
      sum += w_row[k] * in[(n * in_len + k) * cols + c];
    }
    out[index] = beta + alpha * sum;
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

// top = feat * gate[n][p], and the copy of feat for in-place use.
template <typename Dtype>
__global__ void FlowAmplifyForward(const int count, const int channels,
    const int plane, const Dtype* feat, const Dtype* gate, Dtype* top,
    Dtype* copy) {
  CUDA_KERNEL_LOOP(index, count) {
    const int n = index / plane / channels, p = index % plane;
    const Dtype x = feat[index];
    if (copy) copy[index] = x;
    top[index] = x * gate[n * plane + p];
  }
}

// One thread per (n, p), looping over channels (coalesced across p):
// feat_diff = top_diff * gate, gate_diff = sum_c top_diff * feat.
template <typename Dtype>
__global__ void FlowAmplifyBackward(const int count, const int channels,
    const int plane, const Dtype* top_diff, const Dtype* feat,
    const Dtype* gate, Dtype* feat_diff, Dtype* gate_diff) {
  CUDA_KERNEL_LOOP(index, count) {
    const int n = index / plane, p = index % plane;
    const Dtype g = gate[index];
    Dtype acc = 0;
    for (int c = 0; c < channels; ++c) {
      const int i = (n * channels + c) * plane + p;
      const Dtype d = top_diff[i];  // read before an in-place write
      if (gate_diff) acc += d * feat[i];
      if (feat_diff) feat_diff[i] = d * g;
    }
    if (gate_diff) gate_diff[index] = acc;
  }
}

// feat_diff = top_diff * gate[n][p], one thread per element: the paper's case (no gradient to the gate
// source), where the per-(n, p) kernel above leaves most of the GPU idle.
template <typename Dtype>
__global__ void FlowAmplifyBackwardFeat(const int count, const int channels,
    const int plane, const Dtype* top_diff, const Dtype* gate,
    Dtype* feat_diff) {
  CUDA_KERNEL_LOOP(index, count) {
    const int n = index / plane / channels, p = index % plane;
    feat_diff[index] = top_diff[index] * gate[n * plane + p];
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

// Through the clip and the norm: source_diff from magnitude_diff.
template <typename Dtype>
__global__ void FlowAmplifySourceBackward(const int count, const int channels,
    const int plane, const Dtype clip_max, const Dtype* source,
    const Dtype* magnitude_diff, Dtype* source_diff) {
  CUDA_KERNEL_LOOP(index, count) {
    const int n = index / plane, p = index % plane;
    const Dtype* s = source + n * channels * plane + p;
    Dtype* sd = source_diff + n * channels * plane + p;
    Dtype dm = magnitude_diff[index];
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

template <typename Dtype>
void FlowAmplifyLayer<Dtype>::Forward_gpu(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  const int source_count = num_ * source_height_ * source_width_;
  const int plane = height_ * width_;
  Dtype* magnitude = magnitude_.mutable_gpu_data();
  // NOLINT_NEXT_LINE(whitespace/operators)
  FlowAmplifyMagnitude<Dtype><<<CAFFE_GET_BLOCKS(source_count),
      CAFFE_CUDA_NUM_THREADS>>>(source_count, source_channels_,
      source_height_ * source_width_, clip_max_, bottom[1]->gpu_data(),
      magnitude);
  CUDA_POST_KERNEL_CHECK;
  const int resized_count = resized_x_.count();
  // NOLINT_NEXT_LINE(whitespace/operators)
  FlowAmplifyResizeLastAxis<Dtype><<<CAFFE_GET_BLOCKS(resized_count),
      CAFFE_CUDA_NUM_THREADS>>>(resized_count, source_width_, width_,
      wx_.gpu_data(), wx_range_.gpu_data(), magnitude,
      resized_x_.mutable_gpu_data());
  CUDA_POST_KERNEL_CHECK;
  const int gate_count = gate_.count();
  Dtype* gate = gate_.mutable_gpu_data();
  // NOLINT_NEXT_LINE(whitespace/operators)
  FlowAmplifyResizeMiddleAxis<Dtype><<<CAFFE_GET_BLOCKS(gate_count),
      CAFFE_CUDA_NUM_THREADS>>>(gate_count, source_height_, height_, width_,
      wy_.gpu_data(), wy_range_.gpu_data(), scale_, offset_,
      resized_x_.gpu_data(), gate);
  CUDA_POST_KERNEL_CHECK;
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
  const int count = bottom[0]->count();
  Dtype* copy = in_place_ ? feat_copy_.mutable_gpu_data() : NULL;
  // NOLINT_NEXT_LINE(whitespace/operators)
  FlowAmplifyForward<Dtype><<<CAFFE_GET_BLOCKS(count),
      CAFFE_CUDA_NUM_THREADS>>>(count, channels_, plane,
      bottom[0]->gpu_data(), gate_.gpu_data(), top[0]->mutable_gpu_data(),
      copy);
  CUDA_POST_KERNEL_CHECK;
}

template <typename Dtype>
void FlowAmplifyLayer<Dtype>::Backward_gpu(const vector<Blob<Dtype>*>& top,
    const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {
  if (!propagate_down[0] && !propagate_down[1]) {
    return;
  }
  const int plane = height_ * width_;
  const int gate_count = gate_.count();
  const Dtype* feat =
      in_place_ ? feat_copy_.gpu_data() : bottom[0]->gpu_data();
  Dtype* feat_diff = propagate_down[0] ? bottom[0]->mutable_gpu_diff() : NULL;
  if (!propagate_down[1]) {
    const int count = bottom[0]->count();
    // NOLINT_NEXT_LINE(whitespace/operators)
    FlowAmplifyBackwardFeat<Dtype><<<CAFFE_GET_BLOCKS(count),
        CAFFE_CUDA_NUM_THREADS>>>(count, channels_, plane, top[0]->gpu_diff(),
        gate_.gpu_data(), feat_diff);
    CUDA_POST_KERNEL_CHECK;
    return;
  }
  Dtype* gate_diff = gate_.mutable_gpu_diff();
  // NOLINT_NEXT_LINE(whitespace/operators)
  FlowAmplifyBackward<Dtype><<<CAFFE_GET_BLOCKS(gate_count),
      CAFFE_CUDA_NUM_THREADS>>>(gate_count, channels_, plane,
      top[0]->gpu_diff(), feat, gate_.gpu_data(), feat_diff, gate_diff);
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
  const int resized_count = resized_x_.count();
  // NOLINT_NEXT_LINE(whitespace/operators)
  FlowAmplifyResizeMiddleAxis<Dtype><<<CAFFE_GET_BLOCKS(resized_count),
      CAFFE_CUDA_NUM_THREADS>>>(resized_count, height_, source_height_,
      width_, wy_t_.gpu_data(), wy_t_range_.gpu_data(), scale_, Dtype(0),
      gate_diff, resized_x_.mutable_gpu_diff());
  CUDA_POST_KERNEL_CHECK;
  const int source_count = magnitude_.count();
  Dtype* magnitude_diff = magnitude_.mutable_gpu_diff();
  // NOLINT_NEXT_LINE(whitespace/operators)
  FlowAmplifyResizeLastAxis<Dtype><<<CAFFE_GET_BLOCKS(source_count),
      CAFFE_CUDA_NUM_THREADS>>>(source_count, width_, source_width_,
      wx_t_.gpu_data(), wx_t_range_.gpu_data(), resized_x_.gpu_diff(),
      magnitude_diff);
  CUDA_POST_KERNEL_CHECK;
  // NOLINT_NEXT_LINE(whitespace/operators)
  FlowAmplifySourceBackward<Dtype><<<CAFFE_GET_BLOCKS(source_count),
      CAFFE_CUDA_NUM_THREADS>>>(source_count, source_channels_,
      source_height_ * source_width_, clip_max_, bottom[1]->gpu_data(),
      magnitude_diff, bottom[1]->mutable_gpu_diff());
  CUDA_POST_KERNEL_CHECK;
}

INSTANTIATE_LAYER_GPU_FUNCS(FlowAmplifyLayer);

}  // namespace caffe
