# gemmaserve: `make demo` builds and runs the demo, `make test` builds and runs every test.
BUILD      ?= build
ASAN_BUILD ?= build-asan
JOBS       ?= $(shell nproc)
NVCC       ?= $(firstword $(wildcard /usr/local/cuda/bin/nvcc) $(shell command -v nvcc))
CMAKE_ARGS ?=
ifneq ($(NVCC),)
CMAKE_ARGS += -DCMAKE_CUDA_COMPILER=$(NVCC)
endif

.PHONY: all deps build test test-unit test-asan demo clean

all: build

deps:
	@scripts/install_deps.sh

$(BUILD)/build.ninja:
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release $(CMAKE_ARGS)

build: deps $(BUILD)/build.ninja
	cmake --build $(BUILD) -j $(JOBS)

# Every CPU test, then the parser/fuzz tests again under AddressSanitizer + UBSan.
# GPU tests are built whenever nvcc exists and skip loudly without a GPU.
test: build
	scripts/install_test_deps.sh
	ctest --test-dir $(BUILD) --output-on-failure -j $(JOBS)
	$(MAKE) test-asan

test-asan: deps
	cmake -S . -B $(ASAN_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DGS_SANITIZE=ON -DGS_WITH_CUDA=OFF
	cmake --build $(ASAN_BUILD) -j $(JOBS) --target gemmaserve $$(scripts/asan_targets.sh)
	ctest --test-dir $(ASAN_BUILD) --output-on-failure -j $(JOBS) -R "^($$(scripts/asan_targets.sh | tr " " "|"))$$"

demo: build
	scripts/demo.sh $(BUILD)/gemmaserve

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
