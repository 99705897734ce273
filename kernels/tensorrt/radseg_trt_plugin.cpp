// TensorRT plugins (IPluginV3, TensorRT >= 10) for the radseg CUDA kernels:
//   RadsegScga             input  features B x N x C        -> B x N x C   fields: tau (f32), batch_mean (i32)
//   RadsegSelfCorrelation  inputs o B x N x C, v B x H x N x d -> B x N x C fields: tau (f32)
// (the SCRA recursive step before its output projection; the surrounding matmuls, the first
// attention and the projections stay ordinary TensorRT layers). fp32 / fp16 / bf16, linear format.
// Load with `trtexec --dynamicPlugins=libradseg_trt_plugin.so` or IPluginRegistry::loadLibrary:
// the library exports getCreators() and setLoggerFinder(). Kernels: ../src/thresholded_attention.cu.
#include <NvInferRuntime.h>
#include <NvInferVersion.h>

#include <cstring>
#include <string>
#include <vector>

#include "radseg_kernels.h"

#if NV_TENSORRT_MAJOR < 10
#error "the radseg TensorRT plugins use IPluginV3 and need TensorRT 10 or newer"
#endif

namespace radseg {
namespace {

using namespace nvinfer1;

constexpr char const* kVersion = "1";
constexpr char const* kNamespace = "radseg";

enum class Op { kScga, kSelfCorrelation };

char const* op_name(Op op) { return op == Op::kScga ? "RadsegScga" : "RadsegSelfCorrelation"; }

bool to_radseg_dtype(DataType type, radseg_dtype* out) {
    switch (type) {
        case DataType::kFLOAT: *out = RADSEG_FLOAT32; return true;
        case DataType::kHALF: *out = RADSEG_FLOAT16; return true;
        case DataType::kBF16: *out = RADSEG_BFLOAT16; return true;
        default: return false;
    }
}

class RadsegPlugin : public IPluginV3, public IPluginV3OneCore, public IPluginV3OneBuild, public IPluginV3OneRuntime {
   public:
    RadsegPlugin(Op op, float tau, int32_t batch_mean) : op_(op), tau_(tau), batch_mean_(batch_mean) {}
    RadsegPlugin(RadsegPlugin const& other)
        : IPluginV3(other), IPluginV3OneCore(other), IPluginV3OneBuild(other), IPluginV3OneRuntime(other),
          op_(other.op_), tau_(other.tau_), batch_mean_(other.batch_mean_) {}
    ~RadsegPlugin() override = default;

    // IPluginV3
    IPluginCapability* getCapabilityInterface(PluginCapabilityType type) noexcept override {
        switch (type) {
            case PluginCapabilityType::kCORE: return static_cast<IPluginV3OneCore*>(this);
            case PluginCapabilityType::kBUILD: return static_cast<IPluginV3OneBuild*>(this);
            case PluginCapabilityType::kRUNTIME: return static_cast<IPluginV3OneRuntime*>(this);
        }
        return nullptr;
    }
    IPluginV3* clone() noexcept override { return new (std::nothrow) RadsegPlugin(*this); }

    // IPluginV3OneCore
    AsciiChar const* getPluginName() const noexcept override { return op_name(op_); }
    AsciiChar const* getPluginVersion() const noexcept override { return kVersion; }
    AsciiChar const* getPluginNamespace() const noexcept override { return kNamespace; }

    // IPluginV3OneBuild
    int32_t getNbOutputs() const noexcept override { return 1; }
    int32_t nb_inputs() const { return op_ == Op::kScga ? 1 : 2; }

    int32_t getOutputDataTypes(DataType* output_types, int32_t nb_outputs, DataType const* input_types,
                               int32_t nb_inputs) const noexcept override {
        if (nb_outputs != 1 || nb_inputs != this->nb_inputs()) return -1;
        output_types[0] = input_types[0];
        return 0;
    }

    int32_t getOutputShapes(DimsExprs const* inputs, int32_t nb_inputs, DimsExprs const* /*shape_inputs*/,
                            int32_t /*nb_shape_inputs*/, DimsExprs* outputs, int32_t nb_outputs,
                            IExprBuilder& /*builder*/) noexcept override {
        if (nb_outputs != 1 || nb_inputs != this->nb_inputs() || inputs[0].nbDims != 3) return -1;
        if (op_ == Op::kSelfCorrelation && inputs[1].nbDims != 4) return -1;
        outputs[0] = inputs[0];  // B x N x C for both operators
        return 0;
    }

    bool supportsFormatCombination(int32_t pos, DynamicPluginTensorDesc const* in_out, int32_t nb_inputs,
                                   int32_t nb_outputs) noexcept override {
        if (nb_inputs != this->nb_inputs() || nb_outputs != 1 || pos >= nb_inputs + nb_outputs) return false;
        PluginTensorDesc const& desc = in_out[pos].desc;
        radseg_dtype unused;
        if (desc.format != TensorFormat::kLINEAR || !to_radseg_dtype(desc.type, &unused)) return false;
        return pos == 0 || desc.type == in_out[0].desc.type;
    }

    int32_t configurePlugin(DynamicPluginTensorDesc const* /*in*/, int32_t nb_inputs,
                            DynamicPluginTensorDesc const* /*out*/, int32_t nb_outputs) noexcept override {
        return nb_inputs == this->nb_inputs() && nb_outputs == 1 ? 0 : -1;
    }

    size_t getWorkspaceSize(DynamicPluginTensorDesc const* inputs, int32_t /*nb_inputs*/,
                            DynamicPluginTensorDesc const* /*outputs*/, int32_t /*nb_outputs*/) const noexcept override {
        if (op_ == Op::kScga) {
            Dims const& d = inputs[0].max;
            return radseg_scga_workspace_size(d.d[0], d.d[1], d.d[2]);
        }
        Dims const& v = inputs[1].max;
        return radseg_self_correlation_workspace_size(v.d[0], v.d[1], v.d[2], v.d[3]);
    }

    // IPluginV3OneRuntime
    int32_t onShapeChange(PluginTensorDesc const* in, int32_t nb_inputs, PluginTensorDesc const* /*out*/,
                          int32_t nb_outputs) noexcept override {
        if (nb_inputs != this->nb_inputs() || nb_outputs != 1 || in[0].dims.nbDims != 3) return -1;
        if (op_ == Op::kSelfCorrelation) {
            Dims const& o = in[0].dims;
            Dims const& v = in[1].dims;
            if (v.nbDims != 4 || v.d[0] != o.d[0] || v.d[2] != o.d[1] || v.d[1] * v.d[3] != o.d[2]) return -1;
        }
        return 0;
    }

    int32_t enqueue(PluginTensorDesc const* input_desc, PluginTensorDesc const* /*output_desc*/,
                    void const* const* inputs, void* const* outputs, void* workspace,
                    cudaStream_t stream) noexcept override {
        radseg_dtype dtype;
        if (!to_radseg_dtype(input_desc[0].type, &dtype)) return -1;
        Dims const& x = input_desc[0].dims;
        if (op_ == Op::kScga) {
            return radseg_scga(inputs[0], outputs[0], workspace, x.d[0], x.d[1], x.d[2], tau_, batch_mean_, dtype,
                               stream);
        }
        Dims const& v = input_desc[1].dims;  // B x H x N x d, contiguous
        return radseg_self_correlation(inputs[0], inputs[1], outputs[0], workspace, v.d[0], v.d[1], v.d[2], v.d[3],
                                       v.d[1] * v.d[2] * v.d[3], v.d[2] * v.d[3], v.d[3], tau_, dtype, stream);
    }

    IPluginV3* attachToContext(IPluginResourceContext* /*context*/) noexcept override { return clone(); }

    PluginFieldCollection const* getFieldsToSerialize() noexcept override {
        fields_.clear();
        fields_.emplace_back("tau", &tau_, PluginFieldType::kFLOAT32, 1);
        if (op_ == Op::kScga) fields_.emplace_back("batch_mean", &batch_mean_, PluginFieldType::kINT32, 1);
        collection_.nbFields = static_cast<int32_t>(fields_.size());
        collection_.fields = fields_.data();
        return &collection_;
    }

   private:
    Op op_;
    float tau_;
    int32_t batch_mean_;
    std::vector<PluginField> fields_;
    PluginFieldCollection collection_{};
};

class RadsegPluginCreator : public IPluginCreatorV3One {
   public:
    explicit RadsegPluginCreator(Op op) : op_(op) {
        fields_.emplace_back("tau", nullptr, PluginFieldType::kFLOAT32, 1);
        if (op == Op::kScga) fields_.emplace_back("batch_mean", nullptr, PluginFieldType::kINT32, 1);
        collection_.nbFields = static_cast<int32_t>(fields_.size());
        collection_.fields = fields_.data();
    }

    IPluginV3* createPlugin(AsciiChar const* /*name*/, PluginFieldCollection const* fc,
                            TensorRTPhase /*phase*/) noexcept override {
        float tau = 10.f;
        int32_t batch_mean = 0;
        for (int32_t i = 0; fc != nullptr && i < fc->nbFields; ++i) {
            PluginField const& f = fc->fields[i];
            if (std::strcmp(f.name, "tau") == 0 && f.type == PluginFieldType::kFLOAT32 && f.data != nullptr) {
                tau = *static_cast<float const*>(f.data);
            } else if (std::strcmp(f.name, "batch_mean") == 0 && f.type == PluginFieldType::kINT32 &&
                       f.data != nullptr) {
                batch_mean = *static_cast<int32_t const*>(f.data);
            }
        }
        return new (std::nothrow) RadsegPlugin(op_, tau, batch_mean);
    }

    PluginFieldCollection const* getFieldNames() noexcept override { return &collection_; }
    AsciiChar const* getPluginName() const noexcept override { return op_name(op_); }
    AsciiChar const* getPluginVersion() const noexcept override { return kVersion; }
    AsciiChar const* getPluginNamespace() const noexcept override { return kNamespace; }

   private:
    Op op_;
    std::vector<PluginField> fields_;
    PluginFieldCollection collection_{};
};

}  // namespace
}  // namespace radseg

// TensorRT's plugin-library loader (IPluginRegistry::loadLibrary, trtexec --dynamicPlugins) looks up
// setLoggerFinder as well as getCreators (NVIDIA's plugin libraries and samples export both). The
// plugin logs nothing (errors are return codes), so the finder is not kept.
extern "C" void setLoggerFinder(nvinfer1::ILoggerFinder* /*finder*/) {}

extern "C" nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nb_creators) {
    static radseg::RadsegPluginCreator scga(radseg::Op::kScga);
    static radseg::RadsegPluginCreator self_correlation(radseg::Op::kSelfCorrelation);
    static nvinfer1::IPluginCreatorInterface* const creators[] = {&scga, &self_correlation};
    nb_creators = 2;
    return creators;
}
