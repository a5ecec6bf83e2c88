# tingshuo: the commands.
#   make run    install what is missing, build, start the server (embedded engines)
#   make install  build and install under PREFIX (default /usr/local), staged under DESTDIR
#   make test   install what is missing (test tools too), build, run every test
#               (normal and ASan+UBSan builds: everything; ThreadSanitizer build:
#               the unit and integration tests, which must run without a report)
# run and test are safe to repeat: installed packages and finished builds are skipped.

JOBS ?= $(shell nproc)
ARGS ?=

# Any ThreadSanitizer report fails the test that caused it, at once. atexit_sleep_ms=0: by
# default every process waits a second before exiting, which the tests' shutdown-time
# bounds (and the stage's total time) cannot afford.
TSAN_ENV = TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 atexit_sleep_ms=0"
# Unit tests of single-threaded code that are slow under ThreadSanitizer, which can find
# nothing in them (test_vad measures a corpus: a minute and more there, for no check).
TSAN_SKIP = '^unit/test_vad$$'
# The integration tests run two at a time here: each starts its own server on free ports and
# mostly waits on real time (speech is played in real time), which halves the stage.

.PHONY: run test deps deps-test build build-asan build-tsan clean install

run: deps build
	./build/tingshuo serve $(ARGS)

test: deps-test build build-asan build-tsan
	cd build && ctest --output-on-failure -j $(JOBS) -L unit
	cd build && ctest --output-on-failure -LE unit
	cd build-asan && ctest --output-on-failure -j $(JOBS) -L unit
	cd build-asan && ctest --output-on-failure -LE unit
	cd build-tsan && $(TSAN_ENV) ctest --output-on-failure -j $(JOBS) -L '^unit$$' -E $(TSAN_SKIP)
	cd build-tsan && $(TSAN_ENV) ctest --output-on-failure -j $(JOBS) -L '^integration$$'

deps:
	@scripts/deps.sh run

deps-test:
	@scripts/deps.sh test

build:
	cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	cmake --build build -j $(JOBS)

build-asan:
	cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DTINGSHUO_SANITIZE=ON >/dev/null
	cmake --build build-asan -j $(JOBS)

# ThreadSanitizer: optimised (the integration tests run in real time), with debug information.
build-tsan:
	cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTINGSHUO_SANITIZE=thread >/dev/null
	cmake --build build-tsan -j $(JOBS)

clean:
	rm -rf build build-asan build-tsan

# The prefix is compiled into the installed binary (where it finds its web files), so a
# change of PREFIX reconfigures and relinks; DESTDIR only stages the files (for a package).
PREFIX ?= /usr/local
DESTDIR ?=
install:
	cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_INSTALL_PREFIX=$(PREFIX) >/dev/null
	cmake --build build -j $(JOBS) --target tingshuo_installed
	DESTDIR=$(DESTDIR) cmake --install build
