// One forward + backward pass of a net on the GPU, written out to compare math modes (MFUSE_TF32) and
// algorithm choices (MFUSE_CUDNN_ALGO) of the fork, linked against its libcaffe (issue 19).
//
//   math_check [--gpu ID] --net NET.prototxt --out DIR [--seed 1] [--batch N]
//              [--blobs fc8_action,loss] [--param-diffs conv1_1,fc6]
//
// The net runs in the TRAIN phase. Its DummyData inputs get random fillers (gaussian with std 1; tops
// whose name holds "mag": uniform 0..20; the label top keeps its filler), drawn from Caffe's RNG seeded
// with --seed like the weight fillers and the dropout masks: the same command gives the same inputs,
// weights and masks in every process, so two runs that differ only in the environment differ only in
// their arithmetic. Writes DIR/<name>.f32 (raw little-endian float32): the data of each blob of --blobs
// and the gradient of the weights (param blob 0) of each layer of --param-diffs, and DIR/index.json
// listing them with their shapes. benchmarks/tf32_accuracy.py runs it and compares the runs.
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "caffe/caffe.hpp"
#include "caffe/util/upgrade_proto.hpp"

using caffe::Blob;
using caffe::Caffe;
using caffe::LayerParameter;
using caffe::Net;
using caffe::NetParameter;

namespace {

struct Options {
  int gpu = 0;
  std::string net;
  std::string out;
  unsigned int seed = 1;
  int batch = 0;
  std::vector<std::string> blobs;
  std::vector<std::string> param_diffs;
};

std::vector<std::string> SplitCommas(const std::string& text) {
  std::vector<std::string> parts;
  std::stringstream stream(text);
  std::string part;
  while (std::getline(stream, part, ',')) {
    if (!part.empty()) parts.push_back(part);
  }
  return parts;
}

[[noreturn]] void Usage(const std::string& problem) {
  std::cerr << "math_check: " << problem << "\n"
            << "usage: math_check [--gpu ID] --net NET.prototxt --out DIR [--seed 1] [--batch N]\n"
            << "                  [--blobs a,b] [--param-diffs layer1,layer2]\n";
  std::exit(2);
}

Options ParseArgs(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) Usage("no value after " + a);
    const std::string value = argv[++i];
    if (a == "--gpu") o.gpu = std::stoi(value);
    else if (a == "--net") o.net = value;
    else if (a == "--out") o.out = value;
    else if (a == "--seed") o.seed = static_cast<unsigned int>(std::stoul(value));
    else if (a == "--batch") o.batch = std::stoi(value);
    else if (a == "--blobs") o.blobs = SplitCommas(value);
    else if (a == "--param-diffs") o.param_diffs = SplitCommas(value);
    else Usage("unknown option " + a);
  }
  if (o.net.empty() || o.out.empty()) Usage("--net and --out are required");
  if (o.blobs.empty() && o.param_diffs.empty()) Usage("nothing to write: give --blobs and/or --param-diffs");
  return o;
}

// Random DummyData fillers (see the header); --batch overrides the first dimension of every shape.
void RandomInputs(NetParameter* param, int batch) {
  for (int i = 0; i < param->layer_size(); ++i) {
    LayerParameter* layer = param->mutable_layer(i);
    if (layer->type() != "DummyData") continue;
    caffe::DummyDataParameter* dummy = layer->mutable_dummy_data_param();
    CHECK_EQ(dummy->data_filler_size(), layer->top_size())
        << "math_check: DummyData layer " << layer->name() << " needs one data_filler per top";
    for (int j = 0; j < layer->top_size(); ++j) {
      if (batch > 0) dummy->mutable_shape(j)->set_dim(0, batch);
      const std::string& top = layer->top(j);
      if (top == "label") continue;
      caffe::FillerParameter* filler = dummy->mutable_data_filler(j);
      filler->Clear();
      if (top.find("mag") != std::string::npos) {
        filler->set_type("uniform");
        filler->set_min(0);
        filler->set_max(20);
      } else {
        filler->set_type("gaussian");
        filler->set_std(1);
      }
    }
  }
}

struct Written {
  std::string name, kind, file;
  std::vector<int> shape;
};

Written WriteBlob(const std::string& dir, const std::string& name, const std::string& kind,
                  const Blob<float>& blob, bool diff) {
  Written w{name, kind, name + (kind == "param_diff" ? ".diff" : "") + ".f32", blob.shape()};
  std::ofstream out(dir + "/" + w.file, std::ios::binary);
  const float* values = diff ? blob.cpu_diff() : blob.cpu_data();
  out.write(reinterpret_cast<const char*>(values), sizeof(float) * blob.count());
  CHECK(out.good()) << "math_check: cannot write " << dir << "/" << w.file;
  return w;
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = ParseArgs(argc, argv);
  FLAGS_logtostderr = 1;
  FLAGS_minloglevel = 1;
  google::InitGoogleLogging(argv[0]);
  Caffe::SetDevice(o.gpu);
  Caffe::set_mode(Caffe::GPU);
  Caffe::set_random_seed(o.seed);  // after SetDevice, which reseeds cuRAND
  NetParameter param;
  caffe::ReadNetParamsFromTextFileOrDie(o.net, &param);
  param.mutable_state()->set_phase(caffe::TRAIN);
  RandomInputs(&param, o.batch);
  Net<float> net(param);
  net.Forward();
  net.Backward();
  std::vector<Written> written;
  for (const std::string& name : o.blobs) {
    CHECK(net.has_blob(name)) << "math_check: no blob " << name << " in " << o.net;
    written.push_back(WriteBlob(o.out, name, "data", *net.blob_by_name(name), false));
  }
  for (const std::string& name : o.param_diffs) {
    CHECK(net.has_layer(name)) << "math_check: no layer " << name << " in " << o.net;
    const auto& blobs = net.layer_by_name(name)->blobs();
    CHECK(!blobs.empty()) << "math_check: layer " << name << " has no weights";
    written.push_back(WriteBlob(o.out, name, "param_diff", *blobs[0], true));
  }
  std::ofstream index(o.out + "/index.json");
  index << "[";
  for (size_t i = 0; i < written.size(); ++i) {
    const Written& w = written[i];
    index << (i ? ", " : "") << "{\"name\": \"" << w.name << "\", \"kind\": \"" << w.kind << "\", \"file\": \""
          << w.file << "\", \"shape\": [";
    for (size_t j = 0; j < w.shape.size(); ++j) index << (j ? ", " : "") << w.shape[j];
    index << "]}";
  }
  index << "]\n";
  CHECK(index.good()) << "math_check: cannot write " << o.out << "/index.json";
  std::cout << "math_check: " << written.size() << " blobs written to " << o.out << std::endl;
  return 0;
}
