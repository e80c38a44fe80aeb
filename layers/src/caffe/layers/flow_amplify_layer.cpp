// mfuse: FlowAmplify, feature amplification by optical-flow magnitude.
#include <algorithm>
#include <cmath>
#include <sstream>
#include <string>
#include <vector>

#include "caffe/layers/flow_amplify_layer.hpp"

namespace caffe {

namespace {

// Per-sample gate means at or below this (in absolute value) are refused under
// normalize: MEAN; dividing by them would blow the features up.
const double kMinGateMean = 1e-6;

// " (features <shape>, gate source <shape>)", appended to every CHECK message.
template <typename Dtype>
std::string ShapesOf(const vector<Blob<Dtype>*>& bottom) {
  std::ostringstream out;
  out << " (features " << bottom[0]->shape_string()
      << ", gate source " << bottom[1]->shape_string() << ")";
  return out.str();
}

// out[r][o] = sum_k w[o][k] in[r][k]: resizes `rows` rows of length in_len
// to out_len along the last axis.
template <typename Dtype>
void ResizeLastAxis(int rows, int in_len, int out_len, const Dtype* w,
    const int* range, const Dtype* in, Dtype* out) {
  for (int r = 0; r < rows; ++r) {
    const Dtype* in_row = in + r * in_len;
    for (int o = 0; o < out_len; ++o) {
      const Dtype* w_row = w + o * in_len;
      Dtype sum = 0;
      for (int k = range[2 * o]; k < range[2 * o + 1]; ++k) {
        sum += w_row[k] * in_row[k];
      }
      out[r * out_len + o] = sum;
    }
  }
}

// out[n][o][c] = beta + alpha * sum_k w[o][k] in[n][k][c]: resizes the middle
// axis of num x in_len x cols to num x out_len x cols.
template <typename Dtype>
void ResizeMiddleAxis(int num, int in_len, int out_len, int cols,
    const Dtype* w, const int* range, Dtype alpha, Dtype beta,
    const Dtype* in, Dtype* out) {
  for (int n = 0; n < num; ++n) {
    for (int o = 0; o < out_len; ++o) {
      const Dtype* w_row = w + o * in_len;
      Dtype* out_row = out + (n * out_len + o) * cols;
      for (int c = 0; c < cols; ++c) {
        Dtype sum = 0;
        for (int k = range[2 * o]; k < range[2 * o + 1]; ++k) {
          sum += w_row[k] * in[(n * in_len + k) * cols + c];
        }
        out_row[c] = beta + alpha * sum;
      }
    }
  }
}

}  // namespace

void FlowAmplifyResizeWeights(int src, int dst,
    FlowAmplifyParameter_ResizeMethod method, bool area_shrinks,
    std::vector<double>* weights) {
  CHECK_GT(src, 0) << "FlowAmplifyResizeWeights: empty source axis";
  CHECK_GT(dst, 0) << "FlowAmplifyResizeWeights: empty destination axis";
  weights->assign(static_cast<size_t>(dst) * src, 0.);
  double* w = &(*weights)[0];
  // As cv::resize: inv_scale = dst / src and scale = 1 / inv_scale, in double.
  const double inv_scale = static_cast<double>(dst) / src;
  const double scale = 1. / inv_scale;
  if (method == FlowAmplifyParameter_ResizeMethod_NEAREST) {
    // resizeNN: sx = floor(dx * scale), clamped.
    for (int d = 0; d < dst; ++d) {
      const int s = std::min(static_cast<int>(std::floor(d * scale)), src - 1);
      w[d * src + s] = 1.;
    }
    return;
  }
  if (method == FlowAmplifyParameter_ResizeMethod_AREA && area_shrinks) {
    // computeResizeAreaTab: each destination pixel averages the source
    // pixels its footprint [d * scale, (d + 1) * scale) covers, partially
    // covered ones by the covered fraction.
    for (int d = 0; d < dst; ++d) {
      const double fs1 = d * scale;
      const double fs2 = fs1 + scale;
      const double cell = std::min(scale, src - fs1);
      int s1 = static_cast<int>(std::ceil(fs1));
      int s2 = static_cast<int>(std::floor(fs2));
      s2 = std::min(s2, src - 1);
      s1 = std::min(s1, s2);
      if (s1 - fs1 > 1e-3) {
        w[d * src + s1 - 1] += static_cast<float>((s1 - fs1) / cell);
      }
      for (int s = s1; s < s2; ++s) {
        w[d * src + s] += static_cast<float>(1. / cell);
      }
      if (fs2 - s2 > 1e-3) {
        w[d * src + s2] += static_cast<float>(
            std::min(std::min(fs2 - s2, 1.), cell) / cell);
      }
    }
    return;
  }
  // Two taps: INTER_LINEAR (half-pixel centres) or INTER_AREA when the image
  // grows along either axis; edges clamp.
  const bool area = method == FlowAmplifyParameter_ResizeMethod_AREA;
  for (int d = 0; d < dst; ++d) {
    int s;
    float f;
    if (!area) {
      const double pos = (d + 0.5) * scale - 0.5;
      s = static_cast<int>(std::floor(pos));
      f = static_cast<float>(pos - s);
    } else {
      s = static_cast<int>(std::floor(d * scale));
      f = static_cast<float>((d + 1) - (s + 1) * inv_scale);
      f = f <= 0 ? 0.f : f - std::floor(f);
    }
    if (s < 0) {
      s = 0;
      f = 0.f;
    }
    if (s >= src - 1) {
      s = src - 1;
      f = 0.f;
    }
    w[d * src + s] += 1.f - f;
    if (f != 0.f) {
      w[d * src + s + 1] += f;
    }
  }
}

template <typename Dtype>
void FlowAmplifyLayer<Dtype>::LayerSetUp(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  const FlowAmplifyParameter& param = this->layer_param_.flow_amplify_param();
  const std::string& name = this->layer_param_.name();
  // Not ExactNumBottomBlobs: Caffe's count check does not name the layer.
  CHECK_EQ(static_cast<int>(bottom.size()), 2) << name << ": FlowAmplify "
      << "takes 2 bottoms (features N x C x H x W, gate source N x G x H' x W'"
      << "), got " << bottom.size();
  CHECK(std::isfinite(param.offset()) && std::isfinite(param.scale()))
      << name << ": offset and scale must be finite; got offset "
      << param.offset() << ", scale " << param.scale() << ShapesOf(bottom);
  CHECK(param.scale() >= 0 || param.allow_negative_scale())
      << name << ": scale must be >= 0 unless allow_negative_scale is set; "
      << "got scale " << param.scale() << ShapesOf(bottom);
  CHECK_GE(param.clip_max(), 0)
      << name << ": clip_max must be >= 0 (0 disables clipping); got "
      << param.clip_max() << ShapesOf(bottom);
  offset_ = param.offset();
  scale_ = param.scale();
  clip_max_ = param.clip_max();
  normalize_mean_ =
      param.normalize() == FlowAmplifyParameter_Normalization_MEAN;
  height_ = width_ = source_height_ = source_width_ = -1;
}

template <typename Dtype>
void FlowAmplifyLayer<Dtype>::SetUpAxis(int src, int dst, bool area_shrinks,
    Blob<Dtype>* weights, Blob<int>* ranges, Blob<Dtype>* weights_t,
    Blob<int>* ranges_t) {
  std::vector<double> w;
  FlowAmplifyResizeWeights(src, dst,
      this->layer_param_.flow_amplify_param().resize(), area_shrinks, &w);
  weights->Reshape(vector<int>{dst, src});
  weights_t->Reshape(vector<int>{src, dst});
  ranges->Reshape(vector<int>{dst, 2});
  ranges_t->Reshape(vector<int>{src, 2});
  Dtype* wd = weights->mutable_cpu_data();
  Dtype* wt = weights_t->mutable_cpu_data();
  int* rd = ranges->mutable_cpu_data();
  int* rt = ranges_t->mutable_cpu_data();
  for (int i = 0; i < 2 * dst; i += 2) {
    rd[i] = src;
    rd[i + 1] = 0;
  }
  for (int i = 0; i < 2 * src; i += 2) {
    rt[i] = dst;
    rt[i + 1] = 0;
  }
  for (int d = 0; d < dst; ++d) {
    for (int s = 0; s < src; ++s) {
      const double v = w[d * src + s];
      wd[d * src + s] = wt[s * dst + d] = static_cast<Dtype>(v);
      if (v != 0.) {
        rd[2 * d] = std::min(rd[2 * d], s);
        rd[2 * d + 1] = std::max(rd[2 * d + 1], s + 1);
        rt[2 * s] = std::min(rt[2 * s], d);
        rt[2 * s + 1] = std::max(rt[2 * s + 1], d + 1);
      }
    }
  }
  // Rows without any weight (a source pixel no output reads) get [0, 0).
  for (int i = 0; i < 2 * dst; i += 2) rd[i] = std::min(rd[i], rd[i + 1]);
  for (int i = 0; i < 2 * src; i += 2) rt[i] = std::min(rt[i], rt[i + 1]);
}

template <typename Dtype>
void FlowAmplifyLayer<Dtype>::Reshape(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  const std::string& name = this->layer_param_.name();
  CHECK_EQ(bottom[0]->num_axes(), 4)
      << name << ": features must have 4 axes, N x C x H x W"
      << ShapesOf(bottom);
  CHECK_EQ(bottom[1]->num_axes(), 4)
      << name << ": the gate source must have 4 axes, N x G x H' x W'"
      << ShapesOf(bottom);
  CHECK_EQ(bottom[0]->shape(0), bottom[1]->shape(0))
      << name << ": features and gate source must have the same N"
      << ShapesOf(bottom);
  CHECK(bottom[1]->shape(1) == 1 || bottom[1]->shape(1) == 2)
      << name << ": the gate source must have G = 1 (magnitude) or G = 2 "
      << "(x/y flow) channels" << ShapesOf(bottom);
  CHECK_GT(bottom[0]->count(), 0)
      << name << ": features must not be zero-sized" << ShapesOf(bottom);
  CHECK_GT(bottom[1]->count(), 0)
      << name << ": the gate source must not be zero-sized"
      << ShapesOf(bottom);
  CHECK(top[0] != bottom[1])
      << name << ": the top must not overwrite the gate source (in-place "
      << "use is supported on the features only)" << ShapesOf(bottom);
  in_place_ = top[0] == bottom[0];
  num_ = bottom[0]->shape(0);
  channels_ = bottom[0]->shape(1);
  source_channels_ = bottom[1]->shape(1);
  const int height = bottom[0]->shape(2), width = bottom[0]->shape(3);
  const int source_height = bottom[1]->shape(2);
  const int source_width = bottom[1]->shape(3);
  if (height != height_ || width != width_ ||
      source_height != source_height_ || source_width != source_width_) {
    height_ = height;
    width_ = width;
    source_height_ = source_height;
    source_width_ = source_width;
    // OpenCV's INTER_AREA uses pixel-area weights only when neither axis
    // grows.
    const bool area_shrinks = height_ <= source_height_ &&
        width_ <= source_width_;
    SetUpAxis(source_height_, height_, area_shrinks, &wy_, &wy_range_,
        &wy_t_, &wy_t_range_);
    SetUpAxis(source_width_, width_, area_shrinks, &wx_, &wx_range_,
        &wx_t_, &wx_t_range_);
    const int* range = wy_range_.cpu_data();
    gate_rows_ = 1;
    for (int y = 0; y < height_; ++y) {
      gate_rows_ = std::max(gate_rows_, range[2 * y + 1] - range[2 * y]);
    }
  }
  if (!in_place_) {
    top[0]->ReshapeLike(*bottom[0]);
  }
  feat_copy_.Reshape(in_place_ ? bottom[0]->shape() : vector<int>{0});
  magnitude_.Reshape(num_, 1, source_height_, source_width_);
  resized_x_.Reshape(num_, 1, source_height_, width_);
  gate_.Reshape(num_, 1, height_, width_);
  gate_mean_.Reshape(vector<int>{num_});
  dot_.Reshape(vector<int>{num_});
}

template <typename Dtype>
void FlowAmplifyLayer<Dtype>::CheckMeans(const vector<Blob<Dtype>*>& bottom) {
  const Dtype* mean = gate_mean_.cpu_data();
  for (int n = 0; n < num_; ++n) {
    CHECK(std::abs(static_cast<double>(mean[n])) > kMinGateMean)
        << this->layer_param_.name() << ": normalize: MEAN needs a gate "
        << "whose spatial mean is not 0 (|mean| > " << kMinGateMean
        << "); sample " << n << " has mean " << mean[n] << " (offset "
        << offset_ << ", scale " << scale_ << ")" << ShapesOf(bottom);
  }
}

template <typename Dtype>
void FlowAmplifyLayer<Dtype>::Forward_cpu(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  const int source_plane = source_height_ * source_width_;
  const int plane = height_ * width_;
  // Magnitude, clipped.
  const Dtype* source = bottom[1]->cpu_data();
  Dtype* magnitude = magnitude_.mutable_cpu_data();
  for (int n = 0; n < num_; ++n) {
    const Dtype* s = source + n * source_channels_ * source_plane;
    for (int p = 0; p < source_plane; ++p) {
      Dtype m = s[p];
      if (source_channels_ == 2) {
        const Dtype y = s[source_plane + p];
        m = std::sqrt(m * m + y * y);
      }
      if (clip_max_ > 0 && m > clip_max_) {
        m = clip_max_;
      }
      magnitude[n * source_plane + p] = m;
    }
  }
  // Resize (along x, then y), then offset + scale * resized.
  ResizeLastAxis(num_ * source_height_, source_width_, width_,
      wx_.cpu_data(), wx_range_.cpu_data(), magnitude,
      resized_x_.mutable_cpu_data());
  Dtype* gate = gate_.mutable_cpu_data();
  ResizeMiddleAxis(num_, source_height_, height_, width_, wy_.cpu_data(),
      wy_range_.cpu_data(), scale_, offset_, resized_x_.cpu_data(), gate);
  if (normalize_mean_) {
    Dtype* mean = gate_mean_.mutable_cpu_data();
    for (int n = 0; n < num_; ++n) {
      Dtype sum = 0;
      for (int p = 0; p < plane; ++p) sum += gate[n * plane + p];
      mean[n] = sum / plane;
    }
    CheckMeans(bottom);
    for (int n = 0; n < num_; ++n) {
      caffe_scal(plane, Dtype(1) / mean[n], gate + n * plane);
    }
  }
  // The product, broadcast over channels (one pass over the features).
  const Dtype* feat = bottom[0]->cpu_data();
  Dtype* top_data = top[0]->mutable_cpu_data();
  Dtype* copy = in_place_ ? feat_copy_.mutable_cpu_data() : NULL;
  for (int n = 0; n < num_; ++n) {
    const Dtype* g = gate + n * plane;
    for (int c = 0; c < channels_; ++c) {
      const int offset = (n * channels_ + c) * plane;
      for (int p = 0; p < plane; ++p) {
        const Dtype x = feat[offset + p];
        if (copy) copy[offset + p] = x;
        top_data[offset + p] = x * g[p];
      }
    }
  }
}

template <typename Dtype>
void FlowAmplifyLayer<Dtype>::Backward_cpu(const vector<Blob<Dtype>*>& top,
    const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {
  if (!propagate_down[0] && !propagate_down[1]) {
    return;
  }
  const int plane = height_ * width_;
  const int source_plane = source_height_ * source_width_;
  const Dtype* top_diff = top[0]->cpu_diff();
  const Dtype* feat =
      in_place_ ? feat_copy_.cpu_data() : bottom[0]->cpu_data();
  const Dtype* gate = gate_.cpu_data();
  // One pass over the features: dE/dx = g dE/dy, dE/dg = sum_c x dE/dy.
  Dtype* feat_diff = propagate_down[0] ? bottom[0]->mutable_cpu_diff() : NULL;
  Dtype* gate_diff = propagate_down[1] ? gate_.mutable_cpu_diff() : NULL;
  if (gate_diff) {
    caffe_set(gate_.count(), Dtype(0), gate_diff);
  }
  for (int n = 0; n < num_; ++n) {
    const Dtype* g = gate + n * plane;
    Dtype* gd = gate_diff ? gate_diff + n * plane : NULL;
    for (int c = 0; c < channels_; ++c) {
      const int offset = (n * channels_ + c) * plane;
      for (int p = 0; p < plane; ++p) {
        const Dtype d = top_diff[offset + p];  // read before an in-place write
        if (gd) gd[p] += d * feat[offset + p];
        if (feat_diff) feat_diff[offset + p] = d * g[p];
      }
    }
  }
  if (!propagate_down[1]) {
    return;
  }
  if (normalize_mean_) {
    // gate = u / mean(u): dE/du = (dE/dgate - mean(dE/dgate * gate)) / mean(u)
    const Dtype* mean = gate_mean_.cpu_data();
    for (int n = 0; n < num_; ++n) {
      Dtype* gd = gate_diff + n * plane;
      const Dtype dot = caffe_cpu_dot(plane, gd, gate + n * plane) / plane;
      for (int p = 0; p < plane; ++p) {
        gd[p] = (gd[p] - dot) / mean[n];
      }
    }
  }
  // The adjoint of the resize (scale folded in): along y, then along x.
  ResizeMiddleAxis(num_, height_, source_height_, width_, wy_t_.cpu_data(),
      wy_t_range_.cpu_data(), scale_, Dtype(0), gate_diff,
      resized_x_.mutable_cpu_diff());
  Dtype* magnitude_diff = magnitude_.mutable_cpu_diff();
  ResizeLastAxis(num_ * source_height_, width_, source_width_,
      wx_t_.cpu_data(), wx_t_range_.cpu_data(), resized_x_.cpu_diff(),
      magnitude_diff);
  // Through the clip and the norm.
  const Dtype* source = bottom[1]->cpu_data();
  Dtype* source_diff = bottom[1]->mutable_cpu_diff();
  for (int n = 0; n < num_; ++n) {
    const Dtype* s = source + n * source_channels_ * source_plane;
    Dtype* sd = source_diff + n * source_channels_ * source_plane;
    for (int p = 0; p < source_plane; ++p) {
      Dtype dm = magnitude_diff[n * source_plane + p];
      if (source_channels_ == 1) {
        sd[p] = (clip_max_ > 0 && s[p] > clip_max_) ? Dtype(0) : dm;
        continue;
      }
      const Dtype x = s[p], y = s[source_plane + p];
      const Dtype m = std::sqrt(x * x + y * y);
      if (m == 0 || (clip_max_ > 0 && m > clip_max_)) {
        dm = 0;
      } else {
        dm /= m;
      }
      sd[p] = dm * x;
      sd[source_plane + p] = dm * y;
    }
  }
}

#ifdef CPU_ONLY
STUB_GPU(FlowAmplifyLayer);
#endif

INSTANTIATE_CLASS(FlowAmplifyLayer);
REGISTER_LAYER_CLASS(FlowAmplify);

}  // namespace caffe
