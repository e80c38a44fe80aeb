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

}  // namespace

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
  num_ = bottom[0]->shape(0);
  spatial_dim_ = bottom[0]->count(2);
  vector<int> top_shape = bottom[0]->shape();
  top_shape[1] = num_output_;
  if (dot_ && top_shape.size() == 4) {
    top_shape[2] = top_shape[3] = 1;
  }
  top[0]->Reshape(top_shape);
  vector<int> projection_shape(3);
  projection_shape[0] = num_;
  projection_shape[1] = num_output_;
  projection_shape[2] = spatial_dim_;
  for (int s = 0; s < num_streams_; ++s) {
    projections_[s]->Reshape(projection_shape);
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
  const int K = num_output_;
  const int HW = spatial_dim_;
  vector<const Dtype*> projection(num_streams_);
  vector<const Dtype*> bias(num_streams_, NULL);
  for (int s = 0; s < num_streams_; ++s) {
    const int C = channels_[s];
    const Dtype* x = bottom[s]->cpu_data();
    const Dtype* weight = this->blobs_[weight_index(s)]->cpu_data();
    Dtype* z = projections_[s]->mutable_cpu_data();
    if (HW == 1) {  // z (N x K) = x (N x C) * W^T
      caffe_cpu_gemm<Dtype>(CblasNoTrans, CblasTrans, num_, K, C, Dtype(1),
          x, weight, Dtype(0), z);
    } else {  // z[n] (K x HW) = W (K x C) * x[n] (C x HW)
      for (int n = 0; n < num_; ++n) {
        caffe_cpu_gemm<Dtype>(CblasNoTrans, CblasNoTrans, K, HW, C, Dtype(1),
            weight, x + n * C * HW, Dtype(0), z + n * K * HW);
      }
    }
    projection[s] = z;
    if (bias_learnable_) {
      bias[s] = this->blobs_[bias_index(s)]->cpu_data();
    }
  }
  Dtype* top_data = top[0]->mutable_cpu_data();
  for (int nk = 0; nk < num_ * K; ++nk) {
    const int k = nk % K;
    Dtype sum = 0;
    for (int hw = 0; hw < HW; ++hw) {
      const int i = nk * HW + hw;
      Dtype product = 1;
      for (int s = 0; s < num_streams_; ++s) {
        product *= Activate(projection[s][i] + (bias[s] ? bias[s][k]
                                                        : bias_value_), relu_);
      }
      if (dot_) {
        sum += product;
      } else {
        top_data[i] = product;
      }
    }
    if (dot_) {
      top_data[nk] = sum;
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
  for (int i = 0; i < num_ * K * HW; ++i) {
    const int k = (i / HW) % K;
    Dtype before = dot_ ? top_diff[i / HW] : top_diff[i];
    for (int s = 0; s < num_streams_; ++s) {
      const Dtype z = projection[s][i] + (bias[s] ? bias[s][k] : bias_value_);
      Dtype after = 1;
      for (int r = s + 1; r < num_streams_; ++r) {
        after *= Activate(projection[r][i] + (bias[r] ? bias[r][k]
                                                      : bias_value_), relu_);
      }
      projection[s][i] = before * after * ActivationGrad(z, relu_);
      before *= Activate(z, relu_);
    }
  }
  for (int s = 0; s < num_streams_; ++s) {
    const int C = channels_[s];
    const Dtype* dz = projection[s];
    const Dtype* x = bottom[s]->cpu_data();
    if (this->param_propagate_down_[weight_index(s)]) {
      Dtype* weight_diff = this->blobs_[weight_index(s)]->mutable_cpu_diff();
      if (HW == 1) {  // dW (K x C) += dz^T (K x N) * x (N x C)
        caffe_cpu_gemm<Dtype>(CblasTrans, CblasNoTrans, K, C, num_, Dtype(1),
            dz, x, Dtype(1), weight_diff);
      } else {  // dW += dz[n] (K x HW) * x[n]^T (HW x C)
        for (int n = 0; n < num_; ++n) {
          caffe_cpu_gemm<Dtype>(CblasNoTrans, CblasTrans, K, C, HW, Dtype(1),
              dz + n * K * HW, x + n * C * HW, Dtype(1), weight_diff);
        }
      }
    }
    if (bias_learnable_ && this->param_propagate_down_[bias_index(s)]) {
      Dtype* bias_diff = this->blobs_[bias_index(s)]->mutable_cpu_diff();
      for (int nk = 0; nk < num_ * K; ++nk) {
        for (int hw = 0; hw < HW; ++hw) {
          bias_diff[nk % K] += dz[nk * HW + hw];
        }
      }
    }
    if (propagate_down[s]) {
      const Dtype* weight = this->blobs_[weight_index(s)]->cpu_data();
      Dtype* x_diff = bottom[s]->mutable_cpu_diff();
      if (HW == 1) {  // dx (N x C) = dz (N x K) * W (K x C)
        caffe_cpu_gemm<Dtype>(CblasNoTrans, CblasNoTrans, num_, C, K, Dtype(1),
            dz, weight, Dtype(0), x_diff);
      } else {  // dx[n] (C x HW) = W^T (C x K) * dz[n] (K x HW)
        for (int n = 0; n < num_; ++n) {
          caffe_cpu_gemm<Dtype>(CblasTrans, CblasNoTrans, C, HW, K, Dtype(1),
              weight, dz + n * K * HW, Dtype(0), x_diff + n * C * HW);
        }
      }
    }
  }
}

#ifdef CPU_ONLY
STUB_GPU(MultiplicativeFusionLayer);
#endif

INSTANTIATE_CLASS(MultiplicativeFusionLayer);
REGISTER_LAYER_CLASS(MultiplicativeFusion);

}  // namespace caffe
