# Test registration. Unit tests: every tests/unit/test_*.c is one cmocka
# executable named after its file. Integration and browser tests are node
# scripts run with node's own test runner against the built binary.
set(TS_FIXTURES ${CMAKE_SOURCE_DIR}/tests/fixtures)

if(CMOCKA_FOUND)
  file(GLOB UNIT_TESTS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/unit/test_*.c)
  foreach(src ${UNIT_TESTS})
    get_filename_component(name ${src} NAME_WE)
    add_executable(${name} ${src})
    target_link_libraries(${name} PRIVATE tingshuo_lib PkgConfig::CMOCKA)
    target_compile_definitions(${name} PRIVATE TS_FIXTURES="${TS_FIXTURES}"
                               TS_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
    add_test(NAME unit/${name} COMMAND ${name})
    set_tests_properties(unit/${name} PROPERTIES LABELS unit TIMEOUT 120)
  endforeach()
  # The voice agent's simulation sweeps barge-in offsets and echo timings in near real time:
  # about a minute under the sanitizers, more on a busy machine.
  set_tests_properties(unit/test_voice PROPERTIES TIMEOUT 300)
  # Interop with libsrtp2, linked into this test alone.
  if(SRTP2_FOUND)
    target_link_libraries(test_srtpctx PRIVATE PkgConfig::SRTP2)
    target_compile_definitions(test_srtpctx PRIVATE TS_HAVE_LIBSRTP2)
  endif()
endif()

find_program(NODE node)
if(NODE)
  foreach(kind integration e2e)
    file(GLOB JS_TESTS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/${kind}/test_*.mjs)
    foreach(js ${JS_TESTS})
      get_filename_component(name ${js} NAME_WE)
      add_test(NAME ${kind}/${name} COMMAND ${NODE} --test ${js})
      set_tests_properties(${kind}/${name} PROPERTIES LABELS ${kind} TIMEOUT 600
        ENVIRONMENT "TS_BIN=$<TARGET_FILE:tingshuo>;TS_SOURCE_DIR=${CMAKE_SOURCE_DIR};TS_SANITIZE=${TINGSHUO_SANITIZE}")
    endforeach()
  endforeach()
endif()
