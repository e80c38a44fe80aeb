#include <algorithm>
#include <climits>
#include <vector>

#include "caffe/filler.hpp"
#include "caffe/layers/multiplicative_fusion_layer.hpp"
#include "caffe/util/math_functions.hpp"

namespace caffe {

namespace {

template <typename Dtype>
inline Dtype Activate(Dtype z, bool relu) {
  return (relu && z < 0) ? Dtype(0) : z;
}

template <typename Dtype>
inline Dtype ActivationGrad(Dtype z, bool relu) {
  return (!relu || z > 0) ? Dtype(1) : Dtype(0);
}

// The same call on the CPU (Caffe's BLAS) or the GPU (cuBLAS on Caffe's
// handle, so its math mode: strict FP32 unless Caffe allows TF32).
template <typename Dtype>
void Gemm(bool gpu, CBLAS_TRANSPOSE trans_a, CBLAS_TRANSPOSE trans_b,
    int M, int N, int K, Dtype alpha, const Dtype* A, const Dtype* B,
    Dtype beta, Dtype* C) {
#ifndef CPU_ONLY
  if (gpu) {
    caffe_gpu_gemm<Dtype>(trans_a, trans_b, M, N, K, alpha, A, B, beta, C);
    return;
  }
#endif
  caffe_cpu_gemm<Dtype>(trans_a, trans_b, M, N, K, alpha, A, B, beta, C);
}

// y += op(A) x, A: M x N.
template <typename Dtype>
void Gemv(bool gpu, CBLAS_TRANSPOSE trans_a, int M, int N, const Dtype* A,
    const Dtype* x, Dtype* y) {
#ifndef CPU_ONLY
  if (gpu) {
    caffe_gpu_gemv<Dtype>(trans_a, M, N, Dtype(1), A, x, Dtype(1), y);
    return;
  }
#endif
  caffe_cpu_gemv<Dtype>(trans_a, M, N, Dtype(1), A, x, Dtype(1), y);
}

template <typename Dtype>
void SwapLeadingAxes(bool gpu, int A, int B, int L, const Dtype* in,
    Dtype* out) {
#ifndef CPU_ONLY
  if (gpu) {
    caffe_gpu_swap_leading_axes(A, B, L, in, out);
    return;
  }
#endif
  caffe_cpu_swap_leading_axes(A, B, L, in, out);
}

template <typename Dtype>
const Dtype* DataOf(const Blob<Dtype>* blob, bool gpu) {
  return gpu ? blob->gpu_data() : blob->cpu_data();
}

template <typename Dtype>
Dtype* MutableDataOf(Blob<Dtype>* blob, bool gpu) {
  return gpu ? blob->mutable_gpu_data() : blob->mutable_cpu_data();
}

template <typename Dtype>
Dtype* MutableDiffOf(Blob<Dtype>* blob, bool gpu) {
  return gpu ? blob->mutable_gpu_diff() : blob->mutable_cpu_diff();
}

}  // namespace

template <typename Dtype>
void caffe_cpu_swap_leading_axes(int A, int B, int L, const Dtype* in,
    Dtype* out) {
  for (int j = 0; j < B; ++j) {
    for (int i = 0; i < A; ++i) {
      caffe_copy(L, in + (static_cast<size_t>(i) * B + j) * L,
                 out + (static_cast<size_t>(j) * A + i) * L);
    }
  }
}

template void caffe_cpu_swap_leading_axes<float>(int A, int B, int L,
    const float* in, float* out);
template void caffe_cpu_swap_leading_axes<double>(int A, int B, int L,
    const double* in, double* out);

template <typename Dtype>
void MultiplicativeFusionLayer<Dtype>::LayerSetUp(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  const MultiplicativeFusionParameter& param =
      this->layer_param_.multiplicative_fusion_param();
  const string& name = this->layer_param_.name();
  num_streams_ = static_cast<int>(bottom.size());
  CHECK_GE(num_streams_, 2) << name << ": MultiplicativeFusion needs at least "
      << "2 bottoms (streams to fuse), got " << num_streams_
      << (num_streams_ ? " of shape " + bottom[0]->shape_string() : "");
  CHECK(param.has_num_output()) << name << ": num_output (K, the fused "
      << "dimension) is required in multiplicative_fusion_param";
  CHECK_LE(param.num_output(), static_cast<uint32_t>(INT_MAX)) << name
      << ": num_output (K) must be at most " << INT_MAX << ", got "
      << param.num_output();
  num_output_ = static_cast<int>(param.num_output());
  CHECK_GT(num_output_, 0) << name << ": num_output (K) must be > 0, got "
      << num_output_;
  CHECK(param.stream_weight_filler_size() == 0 ||
        param.stream_weight_filler_size() == num_streams_) << name
      << ": stream_weight_filler must be given once per stream ("
      << num_streams_ << " bottoms), got " << param.stream_weight_filler_size();
  CheckBottomShapes(bottom);
  bias_learnable_ = param.bias_learnable();
  bias_value_ = param.bias_value();
  relu_ = param.activation() == MultiplicativeFusionParameter_Activation_RELU;
  dot_ = param.spatial() == MultiplicativeFusionParameter_Spatial_DOT;
  projections_valid_ = false;
  const bool spatial_input = bottom[0]->num_axes() == 4;
  channels_.resize(num_streams_);
  vector<vector<int> > weight_shapes(num_streams_);
  for (int s = 0; s < num_streams_; ++s) {
    channels_[s] = bottom[s]->shape(1);
    weight_shapes[s].push_back(num_output_);
    weight_shapes[s].push_back(channels_[s]);
    if (spatial_input) {  // the shape of a 1x1 Convolution's weight
      weight_shapes[s].push_back(1);
      weight_shapes[s].push_back(1);
    }
  }
  const int blobs_per_stream = bias_learnable_ ? 2 : 1;
  const vector<int> bias_shape(1, num_output_);
  if (this->blobs_.size() > 0) {
    LOG(INFO) << "Skipping parameter initialization";
    CHECK_EQ(static_cast<int>(this->blobs_.size()),
             num_streams_ * blobs_per_stream) << name << ": expected "
        << num_streams_ * blobs_per_stream << " blobs ("
        << num_streams_ << " streams, bias_learnable = " << bias_learnable_
        << "), got " << this->blobs_.size();
    for (int s = 0; s < num_streams_; ++s) {
      CHECK(this->blobs_[weight_index(s)]->shape() == weight_shapes[s]) << name
          << ": the weight of stream " << s << " is "
          << this->blobs_[weight_index(s)]->shape_string() << ", bottom[" << s
          << "] " << bottom[s]->shape_string() << " needs "
          << Blob<Dtype>(weight_shapes[s]).shape_string();
      if (bias_learnable_) {
        CHECK(this->blobs_[bias_index(s)]->shape() == bias_shape) << name
            << ": the bias of stream " << s << " is "
            << this->blobs_[bias_index(s)]->shape_string() << ", expected ("
            << num_output_ << ")";
      }
    }
  } else {
    FillerParameter default_filler;
    default_filler.set_type("xavier");
    const FillerParameter& common_filler =
        param.has_weight_filler() ? param.weight_filler() : default_filler;
    FillerParameter bias_filler;
    bias_filler.set_type("constant");
    bias_filler.set_value(bias_value_);
    this->blobs_.resize(num_streams_ * blobs_per_stream);
    for (int s = 0; s < num_streams_; ++s) {
      Blob<Dtype>* weight = new Blob<Dtype>(weight_shapes[s]);
      this->blobs_[weight_index(s)].reset(weight);
      shared_ptr<Filler<Dtype> > filler(GetFiller<Dtype>(
          param.stream_weight_filler_size() ? param.stream_weight_filler(s)
                                            : common_filler));
      filler->Fill(weight);
      if (bias_learnable_) {
        Blob<Dtype>* bias = new Blob<Dtype>(bias_shape);
        this->blobs_[bias_index(s)].reset(bias);
        GetFiller<Dtype>(bias_filler)->Fill(bias);
      }
    }
  }
  this->param_propagate_down_.resize(this->blobs_.size(), true);
  projections_.resize(num_streams_);
  for (int s = 0; s < num_streams_; ++s) {
    projections_[s].reset(new Blob<Dtype>());
  }
}

template <typename Dtype>
void MultiplicativeFusionLayer<Dtype>::CheckBottomShapes(
    const vector<Blob<Dtype>*>& bottom) const {
  const string& name = this->layer_param_.name();
  const int axes = bottom[0]->num_axes();
  CHECK(axes == 2 || axes == 4) << name << ": bottoms must be 4-D "
      << "(N x C x H x W) or 2-D (N x C); bottom[0] is "
      << bottom[0]->shape_string();
  for (int s = 1; s < bottom.size(); ++s) {
    CHECK_EQ(bottom[s]->num_axes(), axes) << name << ": all bottoms must have "
        << "the same number of axes; bottom[0] is " << bottom[0]->shape_string()
        << ", bottom[" << s << "] is " << bottom[s]->shape_string();
    CHECK_EQ(bottom[s]->shape(0), bottom[0]->shape(0)) << name
        << ": all bottoms must have the same N; bottom[0] is "
        << bottom[0]->shape_string() << ", bottom[" << s << "] is "
        << bottom[s]->shape_string();
    if (axes == 4) {
      CHECK(bottom[s]->shape(2) == bottom[0]->shape(2) &&
            bottom[s]->shape(3) == bottom[0]->shape(3)) << name
          << ": all bottoms must have the same H x W; bottom[0] is "
          << bottom[0]->shape_string() << ", bottom[" << s << "] is "
          << bottom[s]->shape_string();
    }
  }
}

template <typename Dtype>
void MultiplicativeFusionLayer<Dtype>::Reshape(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  const string& name = this->layer_param_.name();
  CHECK_EQ(static_cast<int>(bottom.size()), num_streams_) << name
      << ": set up with " << num_streams_ << " bottoms, reshaped with "
      << bottom.size();
  CheckBottomShapes(bottom);
  for (int s = 0; s < num_streams_; ++s) {
    CHECK_EQ(bottom[s]->shape(1), channels_[s]) << name << ": bottom[" << s
        << "] " << bottom[s]->shape_string() << " has " << bottom[s]->shape(1)
        << " channels, but the layer was set up for " << channels_[s];
  }
  for (int s = 0; s < num_streams_; ++s) {
    CHECK(top[0] != bottom[s]) << name << ": the top must not be a bottom "
        << "(in-place computation is not supported); bottom[" << s << "] is "
        << bottom[s]->shape_string();
  }
  num_ = bottom[0]->shape(0);
  spatial_dim_ = bottom[0]->count(2);
  vector<int> top_shape = bottom[0]->shape();
  top_shape[1] = num_output_;
  if (dot_ && top_shape.size() == 4) {
    top_shape[2] = top_shape[3] = 1;
  }
  top[0]->Reshape(top_shape);
  vector<int> projection_shape(2);  // N x K for 2-D bottoms
  projection_shape[0] = num_;
  projection_shape[1] = num_output_;
  if (spatial_dim_ > 1) {  // K x N x HW
    projection_shape[0] = num_output_;
    projection_shape[1] = num_;
    projection_shape.push_back(spatial_dim_);
  }
  int max_channels = 0;
  for (int s = 0; s < num_streams_; ++s) {
    projections_[s]->Reshape(projection_shape);
    max_channels = std::max(max_channels, channels_[s]);
  }
  scratch_.Reshape(vector<int>(1, max_channels * num_ * spatial_dim_));
  if (bias_learnable_) {  // the bias gradient: dz (K x N*HW) times ones
    bias_multiplier_.Reshape(vector<int>(1, num_ * spatial_dim_));
    caffe_set(bias_multiplier_.count(), Dtype(1),
              bias_multiplier_.mutable_cpu_data());
  }
}

template <typename Dtype>
Dtype* MultiplicativeFusionLayer<Dtype>::OwnScratch(bool gpu) {
  return MutableDataOf(&scratch_, gpu);
}

template <typename Dtype>
Dtype* MultiplicativeFusionLayer<Dtype>::ForwardScratch(int s,
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top,
    bool gpu) {
  const int need = channels_[s] * num_ * spatial_dim_;
  if (top[0]->count() >= need) {  // written by the fused product afterwards
    return MutableDataOf(top[0], gpu);
  }
  for (int r = s + 1; r < num_streams_; ++r) {  // projected afterwards
    if (projections_[r]->count() >= need) {
      return MutableDataOf(projections_[r].get(), gpu);
    }
  }
  return OwnScratch(gpu);
}

template <typename Dtype>
Dtype* MultiplicativeFusionLayer<Dtype>::BackwardScratch(int s,
    const vector<bool>& done, const vector<bool>& propagate_down,
    const vector<Blob<Dtype>*>& bottom, bool gpu) {
  const int need = channels_[s] * num_ * spatial_dim_;
  for (int r = 0; r < num_streams_; ++r) {  // dz_r no longer needed
    if (done[r] && projections_[r]->count() >= need) {
      return MutableDataOf(projections_[r].get(), gpu);
    }
  }
  for (int r = 0; r < num_streams_; ++r) {  // overwritten by dx_r afterwards
    if (r != s && !done[r] && propagate_down[r] &&
        bottom[r]->count() >= need && bottom[r]->diff() != bottom[s]->diff()) {
      return MutableDiffOf(bottom[r], gpu);
    }
  }
  return OwnScratch(gpu);
}

template <typename Dtype>
void MultiplicativeFusionLayer<Dtype>::Project(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top,
    bool gpu) {
  const int K = num_output_;
  const int HW = spatial_dim_;
  for (int s = 0; s < num_streams_; ++s) {
    const int C = channels_[s];
    const Dtype* x = DataOf(bottom[s], gpu);
    const Dtype* weight = DataOf(this->blobs_[weight_index(s)].get(), gpu);
    Dtype* z = MutableDataOf(projections_[s].get(), gpu);
    if (HW == 1) {  // z (N x K) = x (N x C) * W^T
      Gemm(gpu, CblasNoTrans, CblasTrans, num_, K, C, Dtype(1), x, weight,
           Dtype(0), z);
    } else {  // z (K x N*HW) = W (K x C) * x (C x N*HW, a reordered copy)
      Dtype* x_t = ForwardScratch(s, bottom, top, gpu);
      SwapLeadingAxes(gpu, num_, C, HW, x, x_t);
      Gemm(gpu, CblasNoTrans, CblasNoTrans, K, num_ * HW, C, Dtype(1), weight,
           x_t, Dtype(0), z);
    }
  }
}

template <typename Dtype>
void MultiplicativeFusionLayer<Dtype>::BackwardGemms(
    const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom,
    bool gpu) {
  const int K = num_output_;
  const int HW = spatial_dim_;
  const int NHW = num_ * HW;
  // Streams without a bottom gradient first: their turn can borrow the
  // diffs of the bottoms still to be written.
  vector<int> order;
  for (int pass = 0; pass < 2; ++pass) {
    for (int s = 0; s < num_streams_; ++s) {
      if (propagate_down[s] == (pass == 1)) order.push_back(s);
    }
  }
  vector<bool> done(num_streams_, false);
  for (int i = 0; i < num_streams_; ++i) {
    const int s = order[i];
    const int C = channels_[s];
    const Dtype* dz = DataOf(projections_[s].get(), gpu);
    const Dtype* x = DataOf(bottom[s], gpu);
    if (this->param_propagate_down_[weight_index(s)]) {
      Dtype* weight_diff =
          MutableDiffOf(this->blobs_[weight_index(s)].get(), gpu);
      if (HW == 1) {  // dW (K x C) += dz^T (K x N) * x (N x C)
        Gemm(gpu, CblasTrans, CblasNoTrans, K, C, num_, Dtype(1), dz, x,
             Dtype(1), weight_diff);
      } else {  // dW (K x C) += dz (K x N*HW) * x^T (N*HW x C)
        Dtype* x_t = BackwardScratch(s, done, propagate_down, bottom, gpu);
        SwapLeadingAxes(gpu, num_, C, HW, x, x_t);
        Gemm(gpu, CblasNoTrans, CblasTrans, K, C, NHW, Dtype(1), dz, x_t,
             Dtype(1), weight_diff);
      }
    }
    if (bias_learnable_ && this->param_propagate_down_[bias_index(s)]) {
      // b_diff (K) += dz (K x N*HW) * ones, or dz^T (K x N) * ones
      Dtype* bias_diff = MutableDiffOf(this->blobs_[bias_index(s)].get(), gpu);
      const Dtype* ones = DataOf(&bias_multiplier_, gpu);
      if (HW == 1) {
        Gemv(gpu, CblasTrans, num_, K, dz, ones, bias_diff);
      } else {
        Gemv(gpu, CblasNoTrans, K, NHW, dz, ones, bias_diff);
      }
    }
    if (propagate_down[s]) {
      const Dtype* weight = DataOf(this->blobs_[weight_index(s)].get(), gpu);
      Dtype* x_diff = MutableDiffOf(bottom[s], gpu);
      if (HW == 1) {  // dx (N x C) = dz (N x K) * W (K x C)
        Gemm(gpu, CblasNoTrans, CblasNoTrans, num_, C, K, Dtype(1), dz,
             weight, Dtype(0), x_diff);
      } else {  // dx (C x N*HW) = W^T (C x K) * dz (K x N*HW), reordered
        Dtype* dx_t = BackwardScratch(s, done, propagate_down, bottom, gpu);
        Gemm(gpu, CblasTrans, CblasNoTrans, C, NHW, K, Dtype(1), weight, dz,
             Dtype(0), dx_t);
        SwapLeadingAxes(gpu, C, num_, HW, dx_t, x_diff);
      }
    }
    done[s] = true;
  }
}

template <typename Dtype>
void MultiplicativeFusionLayer<Dtype>::BeginBackward() {
  CHECK(projections_valid_) << this->layer_param_.name()
      << ": Backward needs the projections of its own Forward, which the "
      << "previous Backward consumed; run Forward before each Backward";
  projections_valid_ = false;
}

template <typename Dtype>
void MultiplicativeFusionLayer<Dtype>::Forward_cpu(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  Project(bottom, top, false);
  const int K = num_output_;
  const int HW = spatial_dim_;
  const int stride_k = projection_stride_k(), stride_n = projection_stride_n();
  vector<const Dtype*> projection(num_streams_);
  vector<const Dtype*> bias(num_streams_, NULL);
  for (int s = 0; s < num_streams_; ++s) {
    projection[s] = projections_[s]->cpu_data();
    if (bias_learnable_) {
      bias[s] = this->blobs_[bias_index(s)]->cpu_data();
    }
  }
  Dtype* top_data = top[0]->mutable_cpu_data();
  for (int n = 0; n < num_; ++n) {
    for (int k = 0; k < K; ++k) {
      const int nk = n * K + k;
      Dtype sum = 0;
      for (int hw = 0; hw < HW; ++hw) {
        const int j = k * stride_k + n * stride_n + hw;  // in the projections
        Dtype product = 1;
        for (int s = 0; s < num_streams_; ++s) {
          product *= Activate(projection[s][j] + (bias[s] ? bias[s][k]
                                                          : bias_value_),
                              relu_);
        }
        if (dot_) {
          sum += product;
        } else {
          top_data[nk * HW + hw] = product;
        }
      }
      if (dot_) {
        top_data[nk] = sum;
      }
    }
  }
  projections_valid_ = true;
}

template <typename Dtype>
void MultiplicativeFusionLayer<Dtype>::Backward_cpu(
    const vector<Blob<Dtype>*>& top, const vector<bool>& propagate_down,
    const vector<Blob<Dtype>*>& bottom) {
  BeginBackward();
  const int K = num_output_;
  const int HW = spatial_dim_;
  const int stride_k = projection_stride_k(), stride_n = projection_stride_n();
  vector<Dtype*> projection(num_streams_);
  vector<const Dtype*> bias(num_streams_, NULL);
  for (int s = 0; s < num_streams_; ++s) {
    projection[s] = projections_[s]->mutable_cpu_data();
    if (bias_learnable_) {
      bias[s] = this->blobs_[bias_index(s)]->cpu_data();
    }
  }
  // In place, z_s <- g * prod_{r != s} act(z_r + b_r) * act'(z_s + b_s): the
  // product of the streams before s is carried along, the one after s is
  // recomputed from the projections not yet overwritten (no division).
  const Dtype* top_diff = top[0]->cpu_diff();
  for (int n = 0; n < num_; ++n) {
    for (int k = 0; k < K; ++k) {
      const int nk = n * K + k;
      for (int hw = 0; hw < HW; ++hw) {
        const int j = k * stride_k + n * stride_n + hw;  // in the projections
        Dtype before = dot_ ? top_diff[nk] : top_diff[nk * HW + hw];
        for (int s = 0; s < num_streams_; ++s) {
          const Dtype z =
              projection[s][j] + (bias[s] ? bias[s][k] : bias_value_);
          Dtype after = 1;
          for (int r = s + 1; r < num_streams_; ++r) {
            after *= Activate(projection[r][j] + (bias[r] ? bias[r][k]
                                                          : bias_value_),
                              relu_);
          }
          projection[s][j] = before * after * ActivationGrad(z, relu_);
          before *= Activate(z, relu_);
        }
      }
    }
  }
  BackwardGemms(propagate_down, bottom, false);
}

#ifdef CPU_ONLY
STUB_GPU(MultiplicativeFusionLayer);
#endif

INSTANTIATE_CLASS(MultiplicativeFusionLayer);
REGISTER_LAYER_CLASS(MultiplicativeFusion);

}  // namespace caffe
