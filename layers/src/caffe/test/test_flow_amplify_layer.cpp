// mfuse: tests of FlowAmplifyLayer (CPU and GPU, float and double).
#include <algorithm>
#include <cmath>
#include <vector>

#include "gtest/gtest.h"

#include "caffe/blob.hpp"
#include "caffe/common.hpp"
#include "caffe/filler.hpp"
#include "caffe/layers/flow_amplify_layer.hpp"
#include "caffe/util/math_functions.hpp"

#include "caffe/test/test_caffe_main.hpp"
#include "caffe/test/test_gradient_check_util.hpp"

namespace caffe {

template <typename TypeParam>
class FlowAmplifyLayerTest : public MultiDeviceTest<TypeParam> {
  typedef typename TypeParam::Dtype Dtype;

 protected:
  FlowAmplifyLayerTest()
      : feat_(new Blob<Dtype>()), source_(new Blob<Dtype>()),
        top_(new Blob<Dtype>()) {
    Caffe::set_random_seed(1701);
    blob_bottom_vec_.push_back(feat_);
    blob_bottom_vec_.push_back(source_);
    blob_top_vec_.push_back(top_);
  }
  virtual ~FlowAmplifyLayerTest() {
    delete feat_;
    delete source_;
    delete top_;
  }

  // feat: Gaussian; source: uniform [lo, hi], G channels.
  void Fill(int n, int c, int h, int w, int g, int sh, int sw,
      Dtype lo = 0, Dtype hi = 3) {
    feat_->Reshape(n, c, h, w);
    source_->Reshape(n, g, sh, sw);
    FillerParameter gaussian;
    gaussian.set_std(1);
    GaussianFiller<Dtype>(gaussian).Fill(feat_);
    FillerParameter uniform;
    uniform.set_min(lo);
    uniform.set_max(hi);
    UniformFiller<Dtype>(uniform).Fill(source_);
  }

  void SetValues(Blob<Dtype>* blob, const std::vector<double>& values) {
    ASSERT_EQ(blob->count(), static_cast<int>(values.size()));
    for (int i = 0; i < blob->count(); ++i) {
      blob->mutable_cpu_data()[i] = values[i];
    }
  }

  // Moves every pixel's magnitude at least `margin` away from `kink` (a clip
  // bound, or 0 for the norm), so that finite differences do not cross it.
  void AvoidKink(Dtype kink, Dtype margin) {
    const int g = source_->shape(1);
    const int plane = source_->shape(2) * source_->shape(3);
    Dtype* s = source_->mutable_cpu_data();
    for (int n = 0; n < source_->shape(0); ++n) {
      for (int p = 0; p < plane; ++p) {
        Dtype* x = s + n * g * plane + p;
        Dtype m = g == 1 ? x[0] : std::sqrt(x[0] * x[0] + x[plane] * x[plane]);
        if (std::abs(m - kink) < margin) {
          x[0] += (x[0] >= 0 ? 3 : -3) * margin;
        }
      }
    }
  }

  // Forward with the given parameters; returns the top values.
  std::vector<Dtype> Run(const LayerParameter& param) {
    FlowAmplifyLayer<Dtype> layer(param);
    layer.SetUp(blob_bottom_vec_, blob_top_vec_);
    layer.Forward(blob_bottom_vec_, blob_top_vec_);
    return std::vector<Dtype>(top_->cpu_data(),
        top_->cpu_data() + top_->count());
  }

  void CheckGradient(const LayerParameter& param) {
    FlowAmplifyLayer<Dtype> layer(param);
    GradientChecker<Dtype> checker(1e-2, 1e-2);
    checker.CheckGradientExhaustive(&layer, blob_bottom_vec_, blob_top_vec_);
  }

  // Forward and Backward (to both bottoms) once on the CPU, once on the
  // GPU, from the same inputs and top diff: the GPU kernels' top and both
  // bottom diffs must match the CPU's (the gradient-checked reference) to
  // rounding. A no-op in the CPU instantiations.
  void CheckGpuMatchesCpu(const LayerParameter& param) {
#ifndef CPU_ONLY
    if (TypeParam::device != Caffe::GPU) return;
    FlowAmplifyLayer<Dtype> layer(param);
    layer.SetUp(blob_bottom_vec_, blob_top_vec_);
    Blob<Dtype> top_diff;
    top_diff.ReshapeLike(*top_);
    FillerParameter gaussian;
    GaussianFiller<Dtype>(gaussian).Fill(&top_diff);
    const vector<bool> both(2, true);
    vector<vector<Dtype> > results[2];
    for (int device = 0; device < 2; ++device) {
      Caffe::set_mode(device ? Caffe::GPU : Caffe::CPU);
      caffe_set(feat_->count(), Dtype(7), feat_->mutable_cpu_diff());
      caffe_set(source_->count(), Dtype(7), source_->mutable_cpu_diff());
      layer.Forward(blob_bottom_vec_, blob_top_vec_);
      caffe_copy(top_diff.count(), top_diff.cpu_data(),
          top_->mutable_cpu_diff());
      layer.Backward(blob_top_vec_, both, blob_bottom_vec_);
      const Blob<Dtype>* outputs[] = {top_, feat_, source_};
      for (int i = 0; i < 3; ++i) {
        const Dtype* v = i ? outputs[i]->cpu_diff() : outputs[i]->cpu_data();
        results[device].push_back(vector<Dtype>(v, v + outputs[i]->count()));
      }
    }
    const char* names[] = {"top", "feature diff", "source diff"};
    for (int i = 0; i < 3; ++i) {
      Dtype scale = 0;
      for (int j = 0; j < results[0][i].size(); ++j) {
        scale = std::max(scale, std::abs(results[0][i][j]));
      }
      for (int j = 0; j < results[0][i].size(); ++j) {
        ASSERT_NEAR(results[1][i][j], results[0][i][j], 1e-5 * scale)
            << names[i] << " " << j;
      }
    }
#endif
  }

  Blob<Dtype>* const feat_;
  Blob<Dtype>* const source_;
  Blob<Dtype>* const top_;
  vector<Blob<Dtype>*> blob_bottom_vec_;
  vector<Blob<Dtype>*> blob_top_vec_;
};

TYPED_TEST_CASE(FlowAmplifyLayerTest, TestDtypesAndDevices);

TYPED_TEST(FlowAmplifyLayerTest, TestSetUpShapes) {
  typedef typename TypeParam::Dtype Dtype;
  this->Fill(2, 3, 13, 13, 2, 224, 224);
  LayerParameter param;
  FlowAmplifyLayer<Dtype> layer(param);
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  EXPECT_EQ(this->top_->shape(), this->feat_->shape());
  EXPECT_EQ(layer.gate().shape(), (vector<int>{2, 1, 13, 13}));
}

// 4x4 magnitude, 2x2 features: AREA is the 2x2 box average.
TYPED_TEST(FlowAmplifyLayerTest, TestForwardAreaByHand) {
  this->feat_->Reshape(1, 2, 2, 2);
  this->source_->Reshape(1, 1, 4, 4);
  this->SetValues(this->feat_, {1, 2, 3, 4, -1, 0, 0.5, 2});
  this->SetValues(this->source_, {0, 2, 4, 4,
                                  2, 4, 4, 4,
                                  8, 8, 1, 1,
                                  8, 0, 1, 5});
  LayerParameter param;
  param.mutable_flow_amplify_param()->set_scale(0.5);
  // box means 2, 4, 6, 2 -> gate 2, 3, 4, 2
  const double expected[] = {2, 6, 12, 8, -2, 0, 2, 4};
  const auto top = this->Run(param);
  for (int i = 0; i < 8; ++i) EXPECT_NEAR(top[i], expected[i], 1e-6) << i;
}

// 3 -> 2 along x with AREA: weights [2/3, 1/3, 0], [0, 1/3, 2/3].
TYPED_TEST(FlowAmplifyLayerTest, TestForwardAreaFractionalByHand) {
  this->feat_->Reshape(1, 1, 1, 2);
  this->source_->Reshape(1, 1, 1, 3);
  this->SetValues(this->feat_, {1, 1});
  this->SetValues(this->source_, {3, 6, 9});
  LayerParameter param;
  param.mutable_flow_amplify_param()->set_offset(0);
  const auto top = this->Run(param);
  EXPECT_NEAR(top[0], 4, 1e-6);  // 3 * 2/3 + 6 * 1/3
  EXPECT_NEAR(top[1], 8, 1e-6);  // 6 * 1/3 + 9 * 2/3
}

// 2 -> 4 along x: BILINEAR [0, 1, 3, 4], NEAREST and AREA [0, 0, 4, 4].
TYPED_TEST(FlowAmplifyLayerTest, TestForwardUpsamplingByHand) {
  this->feat_->Reshape(1, 1, 1, 4);
  this->source_->Reshape(1, 1, 1, 2);
  this->SetValues(this->feat_, {1, 1, 1, 1});
  this->SetValues(this->source_, {0, 4});
  LayerParameter param;
  FlowAmplifyParameter* amp = param.mutable_flow_amplify_param();
  amp->set_offset(0);
  amp->set_resize(FlowAmplifyParameter_ResizeMethod_BILINEAR);
  const double bilinear[] = {0, 1, 3, 4};
  auto top = this->Run(param);
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(top[i], bilinear[i], 1e-6) << i;
  const double step[] = {0, 0, 4, 4};
  amp->set_resize(FlowAmplifyParameter_ResizeMethod_NEAREST);
  top = this->Run(param);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(top[i], step[i]) << i;
  amp->set_resize(FlowAmplifyParameter_ResizeMethod_AREA);
  top = this->Run(param);
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(top[i], step[i], 1e-6) << i;
}

// G = 2: the magnitude is the Euclidean norm; clip_max caps it.
TYPED_TEST(FlowAmplifyLayerTest, TestForwardFlowNormAndClipByHand) {
  this->feat_->Reshape(1, 1, 1, 3);
  this->source_->Reshape(1, 2, 1, 3);
  this->SetValues(this->feat_, {1, 2, -1});
  this->SetValues(this->source_, {3, 0, -6,     // x
                                  4, 0, 8});    // y
  LayerParameter param;
  const double no_clip[] = {6, 2, -11};  // gates 1 + 5, 1 + 0, 1 + 10
  auto top = this->Run(param);
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(top[i], no_clip[i], 1e-5) << i;
  param.mutable_flow_amplify_param()->set_clip_max(7);
  const double clip[] = {6, 2, -8};
  top = this->Run(param);
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(top[i], clip[i], 1e-5) << i;
}

// MEAN: each sample's gate is divided by its spatial mean.
TYPED_TEST(FlowAmplifyLayerTest, TestForwardMeanByHand) {
  this->feat_->Reshape(2, 1, 1, 2);
  this->source_->Reshape(2, 1, 1, 2);
  this->SetValues(this->feat_, {1, 1, 2, 2});
  this->SetValues(this->source_, {0, 2, 3, 3});
  LayerParameter param;
  param.mutable_flow_amplify_param()->set_normalize(
      FlowAmplifyParameter_Normalization_MEAN);
  // gates (1, 3) / 2 and (4, 4) / 4
  const double expected[] = {0.5, 1.5, 2, 2};
  const auto top = this->Run(param);
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(top[i], expected[i], 1e-6) << i;
}

TYPED_TEST(FlowAmplifyLayerTest, TestOffsetOneScaleZeroIsIdentity) {
  this->Fill(2, 3, 13, 13, 2, 50, 37, -5, 5);
  LayerParameter param;
  param.mutable_flow_amplify_param()->set_scale(0);
  const auto top = this->Run(param);
  for (int i = 0; i < this->feat_->count(); ++i) {
    ASSERT_EQ(top[i], this->feat_->cpu_data()[i]) << i;
  }
}

TYPED_TEST(FlowAmplifyLayerTest, TestInPlaceMatchesOutOfPlace) {
  typedef typename TypeParam::Dtype Dtype;
  this->Fill(2, 3, 5, 4, 2, 11, 7, -2, 2);
  LayerParameter param;
  param.mutable_flow_amplify_param()->set_resize(
      FlowAmplifyParameter_ResizeMethod_BILINEAR);
  const vector<bool> both(2, true);
  Blob<Dtype> top_diff;
  top_diff.ReshapeLike(*this->feat_);
  FillerParameter gaussian;
  GaussianFiller<Dtype>(gaussian).Fill(&top_diff);
  // out of place
  FlowAmplifyLayer<Dtype> layer(param);
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
  caffe_copy(top_diff.count(), top_diff.cpu_data(),
      this->top_->mutable_cpu_diff());
  layer.Backward(this->blob_top_vec_, both, this->blob_bottom_vec_);
  Blob<Dtype> feat_diff, source_diff;
  feat_diff.CopyFrom(*this->feat_, true, true);
  source_diff.CopyFrom(*this->source_, true, true);
  // in place: the features' blob holds the top, then its diff
  vector<Blob<Dtype>*> in_place_top(1, this->feat_);
  FlowAmplifyLayer<Dtype> layer2(param);
  layer2.SetUp(this->blob_bottom_vec_, in_place_top);
  layer2.Forward(this->blob_bottom_vec_, in_place_top);
  for (int i = 0; i < this->feat_->count(); ++i) {
    ASSERT_EQ(this->feat_->cpu_data()[i], this->top_->cpu_data()[i]) << i;
  }
  caffe_copy(top_diff.count(), top_diff.cpu_data(),
      this->feat_->mutable_cpu_diff());
  layer2.Backward(in_place_top, both, this->blob_bottom_vec_);
  for (int i = 0; i < this->feat_->count(); ++i) {
    ASSERT_EQ(this->feat_->cpu_diff()[i], feat_diff.cpu_diff()[i]) << i;
  }
  for (int i = 0; i < this->source_->count(); ++i) {
    ASSERT_NEAR(this->source_->cpu_diff()[i], source_diff.cpu_diff()[i],
        1e-5) << i;
  }
}

TYPED_TEST(FlowAmplifyLayerTest, TestGradientAreaShrinkMagnitude) {
  this->Fill(2, 3, 4, 5, 1, 7, 9);
  LayerParameter param;
  param.mutable_flow_amplify_param()->set_scale(0.7);
  this->CheckGradient(param);
}

TYPED_TEST(FlowAmplifyLayerTest, TestGradientAreaGrowFlowClip) {
  this->Fill(2, 2, 5, 4, 2, 3, 6, -2, 2);
  this->AvoidKink(0, 0.1);
  this->AvoidKink(1.5, 0.05);
  LayerParameter param;
  param.mutable_flow_amplify_param()->set_clip_max(1.5);
  this->CheckGradient(param);
}

TYPED_TEST(FlowAmplifyLayerTest, TestGradientBilinearFlow) {
  this->Fill(2, 2, 4, 3, 2, 9, 5, -2, 2);
  this->AvoidKink(0, 0.1);
  LayerParameter param;
  FlowAmplifyParameter* amp = param.mutable_flow_amplify_param();
  amp->set_resize(FlowAmplifyParameter_ResizeMethod_BILINEAR);
  amp->set_offset(0.5);
  amp->set_scale(-0.3);
  amp->set_allow_negative_scale(true);
  this->CheckGradient(param);
}

TYPED_TEST(FlowAmplifyLayerTest, TestGradientNearestMeanClip) {
  this->Fill(2, 3, 3, 4, 1, 5, 10);
  this->AvoidKink(2, 0.05);
  LayerParameter param;
  FlowAmplifyParameter* amp = param.mutable_flow_amplify_param();
  amp->set_resize(FlowAmplifyParameter_ResizeMethod_NEAREST);
  amp->set_normalize(FlowAmplifyParameter_Normalization_MEAN);
  amp->set_clip_max(2);
  this->CheckGradient(param);
}

TYPED_TEST(FlowAmplifyLayerTest, TestGradientBilinearMeanFlow) {
  this->Fill(2, 2, 4, 4, 2, 6, 3, -2, 2);
  this->AvoidKink(0, 0.1);
  LayerParameter param;
  FlowAmplifyParameter* amp = param.mutable_flow_amplify_param();
  amp->set_resize(FlowAmplifyParameter_ResizeMethod_BILINEAR);
  amp->set_normalize(FlowAmplifyParameter_Normalization_MEAN);
  amp->set_scale(2);
  this->CheckGradient(param);
}

// The GPU kernels' less common paths against the CPU: a gate built from
// several staged tiles (source rows and columns) and column chunks, planes not
// a multiple of 4 (scalar accesses), several channel groups for the gate
// gradient, MEAN normalisation, in-place use.
TYPED_TEST(FlowAmplifyLayerTest, TestGpuMatchesCpuLargeSource) {
  this->Fill(2, 3, 3, 200, 2, 40, 1100, -3, 3);
  LayerParameter param;
  param.mutable_flow_amplify_param()->set_clip_max(2.5);
  this->CheckGpuMatchesCpu(param);
}

TYPED_TEST(FlowAmplifyLayerTest, TestGpuMatchesCpuWideFeatures) {
  this->Fill(1, 2, 2, 600, 1, 5, 700);
  LayerParameter param;
  this->CheckGpuMatchesCpu(param);
}

TYPED_TEST(FlowAmplifyLayerTest, TestGpuMatchesCpuManyChannelsOddPlane) {
  this->Fill(3, 250, 3, 3, 2, 7, 8, -2, 2);
  LayerParameter param;
  FlowAmplifyParameter* amp = param.mutable_flow_amplify_param();
  amp->set_resize(FlowAmplifyParameter_ResizeMethod_BILINEAR);
  amp->set_normalize(FlowAmplifyParameter_Normalization_MEAN);
  this->CheckGpuMatchesCpu(param);
}

TYPED_TEST(FlowAmplifyLayerTest, TestGpuMatchesCpuManyChannelsVector) {
  this->Fill(5, 300, 4, 4, 1, 16, 16, 0, 20);
  LayerParameter param;
  this->CheckGpuMatchesCpu(param);
}

// Bad input: CHECK failures that name the layer, the rule and both shapes.
class FlowAmplifyLayerDeathTest : public ::testing::Test {
 protected:
  void ExpectDeath(const vector<int>& feat_shape,
      const vector<int>& source_shape, const LayerParameter& param,
      const char* pattern) {
    ::testing::FLAGS_gtest_death_test_style = "threadsafe";
    Caffe::set_mode(Caffe::CPU);
    Blob<float> feat(feat_shape), source(source_shape), top;
    vector<Blob<float>*> bottom{&feat, &source}, tops{&top};
    FlowAmplifyLayer<float> layer(param);
    EXPECT_DEATH(layer.SetUp(bottom, tops), pattern);
  }
  LayerParameter Named() {
    LayerParameter param;
    param.set_name("amp1");
    return param;
  }
};

TEST_F(FlowAmplifyLayerDeathTest, MismatchedNum) {
  ExpectDeath({2, 3, 4, 5}, {3, 1, 7, 9}, Named(),
      "amp1: features and gate source must have the same N "
      "\\(features 2 3 4 5 \\(120\\), gate source 3 1 7 9 \\(189\\)\\)");
}

TEST_F(FlowAmplifyLayerDeathTest, GateChannelsNotOneOrTwo) {
  ExpectDeath({2, 3, 4, 5}, {2, 3, 7, 9}, Named(),
      "amp1: the gate source must have G = 1 \\(magnitude\\) or G = 2 "
      "\\(x/y flow\\) channels \\(features 2 3 4 5 \\(120\\), "
      "gate source 2 3 7 9 \\(378\\)\\)");
}

TEST_F(FlowAmplifyLayerDeathTest, ZeroSizedSource) {
  ExpectDeath({2, 3, 4, 5}, {2, 1, 0, 9}, Named(),
      "amp1: the gate source must not be zero-sized \\(features 2 3 4 5 "
      "\\(120\\), gate source 2 1 0 9 \\(0\\)\\)");
}

TEST_F(FlowAmplifyLayerDeathTest, ZeroSizedFeatures) {
  ExpectDeath({2, 3, 0, 5}, {2, 1, 7, 9}, Named(),
      "amp1: features must not be zero-sized \\(features 2 3 0 5 \\(0\\), "
      "gate source 2 1 7 9 \\(126\\)\\)");
}

TEST_F(FlowAmplifyLayerDeathTest, NegativeScaleNotAllowed) {
  LayerParameter param = Named();
  param.mutable_flow_amplify_param()->set_scale(-1);
  ExpectDeath({2, 3, 4, 5}, {2, 1, 7, 9}, param,
      "amp1: scale must be >= 0 unless allow_negative_scale is set; got "
      "scale -1 \\(features 2 3 4 5 \\(120\\), gate source 2 1 7 9 "
      "\\(126\\)\\)");
}

TEST_F(FlowAmplifyLayerDeathTest, ThreeAxisFeatures) {
  ExpectDeath({2, 3, 4}, {2, 1, 7, 9}, Named(),
      "amp1: features must have 4 axes, N x C x H x W \\(features 2 3 4 "
      "\\(24\\), gate source 2 1 7 9 \\(126\\)\\)");
}

TEST_F(FlowAmplifyLayerDeathTest, ZeroGateMean) {
  ::testing::FLAGS_gtest_death_test_style = "threadsafe";
  Caffe::set_mode(Caffe::CPU);
  LayerParameter param = Named();
  FlowAmplifyParameter* amp = param.mutable_flow_amplify_param();
  amp->set_offset(0);
  amp->set_normalize(FlowAmplifyParameter_Normalization_MEAN);
  Blob<float> feat(vector<int>{1, 1, 2, 2}), source(vector<int>{1, 1, 2, 2});
  Blob<float> top;
  caffe_set(source.count(), 0.f, source.mutable_cpu_data());
  vector<Blob<float>*> bottom{&feat, &source}, tops{&top};
  FlowAmplifyLayer<float> layer(param);
  layer.SetUp(bottom, tops);
  EXPECT_DEATH(layer.Forward(bottom, tops),
      "amp1: normalize: MEAN needs a gate whose spatial mean is not 0");
}

}  // namespace caffe
