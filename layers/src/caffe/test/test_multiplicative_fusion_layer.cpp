#include <cmath>
#include <vector>

#include "gtest/gtest.h"

#include "caffe/blob.hpp"
#include "caffe/common.hpp"
#include "caffe/filler.hpp"
#include "caffe/layers/multiplicative_fusion_layer.hpp"

#include "caffe/test/test_caffe_main.hpp"
#include "caffe/test/test_gradient_check_util.hpp"

namespace caffe {

template <typename TypeParam>
class MultiplicativeFusionLayerTest : public MultiDeviceTest<TypeParam> {
  typedef typename TypeParam::Dtype Dtype;

 protected:
  MultiplicativeFusionLayerTest()
      : height_(2), width_(3), blob_top_(new Blob<Dtype>()) {
    Caffe::set_random_seed(1701);
    blob_top_vec_.push_back(blob_top_);
  }
  virtual ~MultiplicativeFusionLayerTest() {
    for (int i = 0; i < bottoms_.size(); ++i) {
      delete bottoms_[i];
    }
    delete blob_top_;
  }

  /// Streams of channels {3, 4, 2, 3, 2} (the first num_streams), N = 2,
  /// H x W = height_ x width_ (spatial, 2 x 3 unless a test changes it) or
  /// none (2-D); Gaussian values, or for ReLU tests values in [0.3, 1] (see
  /// KinkFreeWeights).
  void MakeBottoms(int num_streams, bool spatial, bool positive = false) {
    for (int i = 0; i < bottoms_.size(); ++i) {
      delete bottoms_[i];
    }
    bottoms_.clear();
    const int channels[] = {3, 4, 2, 3, 2};
    FillerParameter filler_param;
    filler_param.set_std(1);
    filler_param.set_min(0.3);
    filler_param.set_max(1);
    GaussianFiller<Dtype> gaussian(filler_param);
    UniformFiller<Dtype> uniform(filler_param);
    for (int s = 0; s < num_streams; ++s) {
      vector<int> shape;
      shape.push_back(2);
      shape.push_back(channels[s]);
      if (spatial) {
        shape.push_back(height_);
        shape.push_back(width_);
      }
      Blob<Dtype>* blob = new Blob<Dtype>(shape);
      if (positive) {
        uniform.Fill(blob);
      } else {
        gaussian.Fill(blob);
      }
      bottoms_.push_back(blob);
    }
  }

  /// For ReLU: weights of magnitude [0.3, 0.9] with a sign per (stream,
  /// output), so that with inputs in [0.3, 1] and |bias| <= 0.1 every
  /// projection is at least 0.08 away from the ReLU's kink (finite
  /// differences of step 1e-2 never cross it). Output 0 is positive in every
  /// stream (the gradient flows), outputs 1 and 2 are cut by one stream each.
  void KinkFreeWeights(Layer<Dtype>* layer, bool learnable) {
    const int sign[5][3] = {{1, 1, -1}, {1, -1, 1}, {1, 1, 1}, {1, 1, 1},
                            {1, -1, 1}};
    FillerParameter filler_param;
    filler_param.set_min(0.3);
    filler_param.set_max(0.9);
    UniformFiller<Dtype> uniform(filler_param);
    for (int s = 0; s < bottoms_.size(); ++s) {
      Blob<Dtype>* weight = layer->blobs()[learnable ? 2 * s : s].get();
      uniform.Fill(weight);
      const int C = weight->shape(1);
      for (int i = 0; i < weight->count(); ++i) {
        weight->mutable_cpu_data()[i] *= sign[s][i / C];
      }
    }
  }

  LayerParameter FusionParam(int num_output, bool relu, bool dot,
                             bool learnable, float bias_value) {
    LayerParameter layer_param;
    layer_param.set_name("fuse");
    MultiplicativeFusionParameter* param =
        layer_param.mutable_multiplicative_fusion_param();
    param->set_num_output(num_output);
    param->mutable_weight_filler()->set_type("gaussian");
    param->mutable_weight_filler()->set_std(0.5);
    param->set_bias_value(bias_value);
    param->set_bias_learnable(learnable);
    param->set_activation(relu ? MultiplicativeFusionParameter_Activation_RELU
                               : MultiplicativeFusionParameter_Activation_NONE);
    param->set_spatial(dot ? MultiplicativeFusionParameter_Spatial_DOT
                           : MultiplicativeFusionParameter_Spatial_ELEMENTWISE);
    return layer_param;
  }

  /// The layer's top, recomputed in double from its blobs and the bottoms.
  vector<double> Reference(Layer<Dtype>* layer, int num_output,
                           bool relu, bool dot, bool learnable,
                           double bias_value) {
    const int S = bottoms_.size();
    const int N = bottoms_[0]->shape(0);
    const int HW = bottoms_[0]->count(2);
    const int K = num_output;
    vector<double> top(N * K * (dot ? 1 : HW), 0.);
    for (int n = 0; n < N; ++n) {
      for (int k = 0; k < K; ++k) {
        for (int hw = 0; hw < HW; ++hw) {
          double product = 1;
          for (int s = 0; s < S; ++s) {
            const int C = bottoms_[s]->shape(1);
            const Dtype* w = layer->blobs()[learnable ? 2 * s : s]->cpu_data();
            const Dtype* x = bottoms_[s]->cpu_data();
            double z = learnable ? layer->blobs()[2 * s + 1]->cpu_data()[k]
                                 : bias_value;
            for (int c = 0; c < C; ++c) {
              z += static_cast<double>(w[k * C + c]) * x[(n * C + c) * HW + hw];
            }
            product *= (relu && z < 0) ? 0. : z;
          }
          if (dot) {
            top[n * K + k] += product;
          } else {
            top[(n * K + k) * HW + hw] = product;
          }
        }
      }
    }
    return top;
  }

  /// Forward against Reference(), then the exhaustive gradient check of
  /// every bottom and blob, for every activation, spatial mode and bias.
  void CheckAllModes(int num_streams, bool spatial) {
    for (int mode = 0; mode < 8; ++mode) {
      const bool relu = mode & 1, dot = mode & 2, learnable = mode & 4;
      // ReLU: a small bias keeps the projections' signs (see KinkFreeWeights).
      const float bias_value = relu ? 0.05 : (learnable ? 0.5 : 1.);
      SCOPED_TRACE(::testing::Message() << num_streams << " streams, "
          << (spatial ? "4-D" : "2-D") << (relu ? ", RELU" : ", NONE")
          << (dot ? ", DOT" : ", ELEMENTWISE")
          << (learnable ? ", learnable bias" : ", fixed bias"));
      MakeBottoms(num_streams, spatial, relu);
      LayerParameter layer_param =
          FusionParam(3, relu, dot, learnable, bias_value);
      MultiplicativeFusionLayer<Dtype> layer(layer_param);
      layer.SetUp(bottoms_, blob_top_vec_);
      if (relu) {
        KinkFreeWeights(&layer, learnable);
      }
      if (learnable) {  // distinct biases, so a mixed-up stream shows
        for (int s = 0; s < num_streams; ++s) {
          Dtype* bias = layer.blobs()[2 * s + 1]->mutable_cpu_data();
          for (int k = 0; k < 3; ++k) {
            bias[k] = (relu ? 0.1 : 1.) * (0.5 + 0.25 * s - 0.3 * k);
          }
        }
      }
      layer.Forward(bottoms_, blob_top_vec_);
      const vector<double> expected =
          Reference(&layer, 3, relu, dot, learnable, bias_value);
      ASSERT_EQ(blob_top_->count(), expected.size());
      for (int i = 0; i < expected.size(); ++i) {
        EXPECT_NEAR(blob_top_->cpu_data()[i], expected[i],
                    1e-4 * (1 + std::fabs(expected[i])));
      }
      GradientChecker<Dtype> checker(1e-2, 1e-2, 1701);
      checker.CheckGradientExhaustive(&layer, bottoms_, blob_top_vec_);
    }
  }

  /// Forward, then Backward with the given propagate_down (weight diffs
  /// zeroed first, bottom diffs poisoned), in the given mode: the top, the
  /// diffs of the bottoms that propagate, the weight diffs.
  vector<vector<Dtype> > Run(MultiplicativeFusionLayer<Dtype>* layer,
      const Blob<Dtype>& top_diff, const vector<bool>& propagate_down,
      Caffe::Brew mode) {
    Caffe::set_mode(mode);
    for (int i = 0; i < bottoms_.size(); ++i) {
      caffe_set(bottoms_[i]->count(), Dtype(7),
                bottoms_[i]->mutable_cpu_diff());
    }
    for (int i = 0; i < layer->blobs().size(); ++i) {
      caffe_set(layer->blobs()[i]->count(), Dtype(0),
                layer->blobs()[i]->mutable_cpu_diff());
    }
    layer->Forward(bottoms_, blob_top_vec_);
    caffe_copy(top_diff.count(), top_diff.cpu_data(),
               blob_top_->mutable_cpu_diff());
    layer->Backward(blob_top_vec_, propagate_down, bottoms_);
    vector<vector<Dtype> > results(1, vector<Dtype>(blob_top_->cpu_data(),
        blob_top_->cpu_data() + blob_top_->count()));
    for (int i = 0; i < bottoms_.size(); ++i) {
      if (propagate_down[i]) {
        results.push_back(vector<Dtype>(bottoms_[i]->cpu_diff(),
            bottoms_[i]->cpu_diff() + bottoms_[i]->count()));
      }
    }
    for (int i = 0; i < layer->blobs().size(); ++i) {
      const Blob<Dtype>& blob = *layer->blobs()[i];
      results.push_back(vector<Dtype>(blob.cpu_diff(),
          blob.cpu_diff() + blob.count()));
    }
    return results;
  }

  static void ExpectClose(const vector<vector<Dtype> >& actual,
      const vector<vector<Dtype> >& expected) {
    ASSERT_EQ(actual.size(), expected.size());
    for (int i = 0; i < expected.size(); ++i) {
      ASSERT_EQ(actual[i].size(), expected[i].size()) << "result " << i;
      for (int j = 0; j < expected[i].size(); ++j) {
        EXPECT_NEAR(actual[i][j], expected[i][j],
                    1e-5 * (1 + std::fabs(expected[i][j])))
            << "result " << i << ", element " << j;
      }
    }
  }

  int height_, width_;
  vector<Blob<Dtype>*> bottoms_;
  Blob<Dtype>* const blob_top_;
  vector<Blob<Dtype>*> blob_top_vec_;
};

TYPED_TEST_CASE(MultiplicativeFusionLayerTest, TestDtypesAndDevices);

TYPED_TEST(MultiplicativeFusionLayerTest, TestSetUp4D) {
  typedef typename TypeParam::Dtype Dtype;
  this->MakeBottoms(2, true);
  MultiplicativeFusionLayer<Dtype> layer(
      this->FusionParam(5, false, false, false, 1));
  layer.SetUp(this->bottoms_, this->blob_top_vec_);
  EXPECT_EQ(this->blob_top_->shape_string(), "2 5 2 3 (60)");
  ASSERT_EQ(layer.blobs().size(), 2);  // fixed bias: weights only
  EXPECT_EQ(layer.blobs()[0]->shape_string(), "5 3 1 1 (15)");
  EXPECT_EQ(layer.blobs()[1]->shape_string(), "5 4 1 1 (20)");
}

TYPED_TEST(MultiplicativeFusionLayerTest, TestSetUpDotLearnableBias) {
  typedef typename TypeParam::Dtype Dtype;
  this->MakeBottoms(3, true);
  MultiplicativeFusionLayer<Dtype> layer(
      this->FusionParam(5, true, true, true, 0.75));
  layer.SetUp(this->bottoms_, this->blob_top_vec_);
  EXPECT_EQ(this->blob_top_->shape_string(), "2 5 1 1 (10)");
  ASSERT_EQ(layer.blobs().size(), 6);  // weight, bias per stream
  const int channels[] = {3, 4, 2};
  for (int s = 0; s < 3; ++s) {
    EXPECT_EQ(layer.blobs()[2 * s]->shape(1), channels[s]);
    ASSERT_EQ(layer.blobs()[2 * s + 1]->shape_string(), "5 (5)");
    for (int k = 0; k < 5; ++k) {
      EXPECT_EQ(layer.blobs()[2 * s + 1]->cpu_data()[k], Dtype(0.75));
    }
  }
}

TYPED_TEST(MultiplicativeFusionLayerTest, TestSetUp2D) {
  typedef typename TypeParam::Dtype Dtype;
  this->MakeBottoms(2, false);
  MultiplicativeFusionLayer<Dtype> layer(
      this->FusionParam(5, false, true, false, 1));
  layer.SetUp(this->bottoms_, this->blob_top_vec_);
  EXPECT_EQ(this->blob_top_->shape_string(), "2 5 (10)");
  EXPECT_EQ(layer.blobs()[0]->shape_string(), "5 3 (15)");  // InnerProduct's
  EXPECT_EQ(layer.blobs()[1]->shape_string(), "5 4 (20)");
}

TYPED_TEST(MultiplicativeFusionLayerTest, TestDefaultFillerIsXavier) {
  typedef typename TypeParam::Dtype Dtype;
  this->MakeBottoms(2, true);
  LayerParameter layer_param;
  layer_param.mutable_multiplicative_fusion_param()->set_num_output(64);
  MultiplicativeFusionLayer<Dtype> layer(layer_param);
  layer.SetUp(this->bottoms_, this->blob_top_vec_);
  for (int s = 0; s < 2; ++s) {
    const Blob<Dtype>& weight = *layer.blobs()[s];
    const Dtype limit = std::sqrt(Dtype(3) / weight.shape(1));  // fan_in C_s
    Dtype max_abs = 0;
    for (int i = 0; i < weight.count(); ++i) {
      max_abs = std::max(max_abs, std::fabs(weight.cpu_data()[i]));
    }
    EXPECT_LE(max_abs, limit);
    EXPECT_GT(max_abs, limit / 2);  // uniform on [-limit, limit]: not 0
  }
}

TYPED_TEST(MultiplicativeFusionLayerTest, TestStreamWeightFiller) {
  typedef typename TypeParam::Dtype Dtype;
  this->MakeBottoms(2, false);
  LayerParameter layer_param = this->FusionParam(3, false, false, false, 1);
  MultiplicativeFusionParameter* param =
      layer_param.mutable_multiplicative_fusion_param();
  for (int s = 0; s < 2; ++s) {
    FillerParameter* filler = param->add_stream_weight_filler();
    filler->set_type("constant");
    filler->set_value(s + 2);
  }
  MultiplicativeFusionLayer<Dtype> layer(layer_param);
  layer.SetUp(this->bottoms_, this->blob_top_vec_);
  for (int s = 0; s < 2; ++s) {
    for (int i = 0; i < layer.blobs()[s]->count(); ++i) {
      EXPECT_EQ(layer.blobs()[s]->cpu_data()[i], Dtype(s + 2));
    }
  }
}

TYPED_TEST(MultiplicativeFusionLayerTest, TestZeroInputGivesBiasProduct) {
  // With x = 0 every projection is the bias: top = bias_value^S.
  typedef typename TypeParam::Dtype Dtype;
  this->MakeBottoms(3, true);
  for (int s = 0; s < 3; ++s) {
    caffe_set(this->bottoms_[s]->count(), Dtype(0),
              this->bottoms_[s]->mutable_cpu_data());
  }
  MultiplicativeFusionLayer<Dtype> layer(
      this->FusionParam(4, false, false, false, 1.5));
  layer.SetUp(this->bottoms_, this->blob_top_vec_);
  layer.Forward(this->bottoms_, this->blob_top_vec_);
  for (int i = 0; i < this->blob_top_->count(); ++i) {
    EXPECT_NEAR(this->blob_top_->cpu_data()[i], 1.5 * 1.5 * 1.5, 1e-5);
  }
}

TYPED_TEST(MultiplicativeFusionLayerTest, TestGradient2Streams4D) {
  this->CheckAllModes(2, true);
}

TYPED_TEST(MultiplicativeFusionLayerTest, TestGradient3Streams4D) {
  this->CheckAllModes(3, true);
}

// H x W = 2 x 4: the GPU kernels' 16-byte accesses for float too.
TYPED_TEST(MultiplicativeFusionLayerTest, TestGradient2Streams4DEvenPlane) {
  this->width_ = 4;
  this->CheckAllModes(2, true);
}

// More streams than the GPU's backward keeps in registers.
TYPED_TEST(MultiplicativeFusionLayerTest, TestGradient5Streams2D) {
  this->CheckAllModes(5, false);
}

// The scratch memory of the reordered copies: K below and above the C_s
// (the top's data, the projection buffers, the bottoms' diffs or the layer's
// own buffer), and every choice of bottom gradients (the streams without one
// go first). Each run must give what the run with every gradient gives, and
// the GPU what the CPU gives.
TYPED_TEST(MultiplicativeFusionLayerTest, TestScratchChoicesAgree) {
  typedef typename TypeParam::Dtype Dtype;
  this->width_ = 4;
  this->MakeBottoms(2, true);
  this->bottoms_[0]->Reshape(vector<int>{3, 5, 2, 4});
  this->bottoms_[1]->Reshape(vector<int>{3, 7, 2, 4});
  FillerParameter filler_param;
  GaussianFiller<Dtype> gaussian(filler_param);
  for (int s = 0; s < 2; ++s) gaussian.Fill(this->bottoms_[s]);
  const int outputs[] = {6, 8};
  for (int o = 0; o < 2; ++o) {
    for (int relu = 0; relu < 2; ++relu) {
      MultiplicativeFusionLayer<Dtype> layer(
          this->FusionParam(outputs[o], relu, false, true, 0.5));
      layer.SetUp(this->bottoms_, this->blob_top_vec_);
      Blob<Dtype> top_diff;
      top_diff.ReshapeLike(*this->blob_top_);
      gaussian.Fill(&top_diff);
      const vector<vector<Dtype> > all = this->Run(&layer, top_diff,
          vector<bool>(2, true), Caffe::CPU);
      for (int mask = 0; mask < 4; ++mask) {
        SCOPED_TRACE(::testing::Message() << "K " << outputs[o] << ", relu "
            << relu << ", propagate_down " << (mask & 1) << (mask >> 1));
        const vector<bool> propagate_down{(mask & 1) != 0, (mask & 2) != 0};
        vector<vector<Dtype> > expected(1, all[0]);
        for (int s = 0; s < 2; ++s) {
          if (propagate_down[s]) expected.push_back(all[1 + s]);
        }
        expected.insert(expected.end(), all.begin() + 3, all.end());
        this->ExpectClose(this->Run(&layer, top_diff, propagate_down,
                                    TypeParam::device), expected);
      }
    }
  }
}

TYPED_TEST(MultiplicativeFusionLayerTest, TestGradient2Streams2D) {
  this->CheckAllModes(2, false);
}

TYPED_TEST(MultiplicativeFusionLayerTest, TestGradient3Streams2D) {
  this->CheckAllModes(3, false);
}

// In-place use would overwrite a bottom the backward pass still needs.
TEST(MultiplicativeFusionLayerDeathTest, InPlaceRefused) {
  ::testing::FLAGS_gtest_death_test_style = "threadsafe";
  Caffe::set_mode(Caffe::CPU);
  Blob<float> a(vector<int>{2, 3, 2, 3}), b(vector<int>{2, 4, 2, 3});
  vector<Blob<float>*> bottom{&a, &b}, top{&b};
  LayerParameter param;
  param.set_name("fuse");
  param.mutable_multiplicative_fusion_param()->set_num_output(4);
  MultiplicativeFusionLayer<float> layer(param);
  EXPECT_DEATH(layer.SetUp(bottom, top),
      "fuse: the top must not be a bottom \\(in-place computation is not "
      "supported\\); bottom\\[1\\] is 2 4 2 3 \\(48\\)");
}

}  // namespace caffe
