// The internal token: where it comes from (file, environment), what is refused (blank,
// unprintable), the check (constant-time digest comparison, Bearer scheme) and generation.
#include "common/internal_token.h"

#include <cstdlib>
#include <set>
#include <string>

#include "absl/strings/ascii.h"
#include "common/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace expertmesh {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kVar[] = "EXPERTMESH_INTERNAL_TOKEN_TEST";

std::string Scratch(const std::string& name) {
  const std::string dir = std::string(EXPERTMESH_BINARY_DIR) + "/test-scratch";
  std::system(("mkdir -p " + dir).c_str());
  return dir + "/" + name;
}

TEST(InternalTokenTest, DisabledAcceptsEverything) {
  InternalToken none;
  EXPECT_FALSE(none.enabled());
  EXPECT_TRUE(none.authorization().empty());
  EXPECT_TRUE(none.Check("", "x").ok());
}

TEST(InternalTokenTest, ChecksTheBearerValue) {
  absl::StatusOr<InternalToken> token = InternalToken::FromString("s3cret-token");
  ASSERT_TRUE(token.ok()) << token.status();
  EXPECT_EQ(token->authorization(), "Bearer s3cret-token");
  EXPECT_TRUE(token->Check("Bearer s3cret-token", "svc").ok());
  EXPECT_TRUE(token->Check("BEARER   s3cret-token ", "svc").ok());
  for (const char* bad : {"", "Bearer", "Bearer ", "s3cret-token", "Bearer s3cret-toke",
                          "Bearer s3cret-token2", "Basic s3cret-token"}) {
    absl::Status s = token->Check(bad, "svc");
    EXPECT_TRUE(absl::IsUnauthenticated(s)) << bad;
    EXPECT_THAT(std::string(s.message()), HasSubstr("svc")) << bad;
    EXPECT_THAT(std::string(s.message()), Not(HasSubstr("s3cret"))) << bad;
  }
}

TEST(InternalTokenTest, RefusesBlankAndUnprintableTokens) {
  for (const char* bad : {"", "two words", "tab\there", "new\nline", "\x7f"}) {
    EXPECT_TRUE(absl::IsInvalidArgument(InternalToken::FromString(bad).status())) << bad;
  }
}

TEST(InternalTokenTest, LoadsFromAFileBeforeTheEnvironment) {
  const std::string file = Scratch("internal-token");
  ASSERT_TRUE(WriteStringToFile(file, "  from-file\n").ok());
  setenv(kVar, "from-env", 1);
  absl::StatusOr<InternalToken> t = InternalToken::Load(file, kVar);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->authorization(), "Bearer from-file");
  t = InternalToken::Load("", kVar);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->authorization(), "Bearer from-env");
  unsetenv(kVar);
  t = InternalToken::Load("", kVar);
  ASSERT_TRUE(t.ok());
  EXPECT_FALSE(t->enabled());
}

TEST(InternalTokenTest, BlankSourcesAreErrorsNotSilentlyOff) {
  const std::string file = Scratch("blank-internal-token");
  ASSERT_TRUE(WriteStringToFile(file, " \n").ok());
  absl::Status s = InternalToken::Load(file, kVar).status();
  EXPECT_TRUE(absl::IsInvalidArgument(s)) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr(file));
  EXPECT_TRUE(absl::IsInvalidArgument(InternalToken::Load(file + ".missing", kVar).status()));
  setenv(kVar, "   ", 1);
  s = InternalToken::Load("", kVar).status();
  EXPECT_TRUE(absl::IsInvalidArgument(s)) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr(kVar));
  unsetenv(kVar);
}

TEST(InternalTokenTest, GeneratedTokensAre64HexDigitsAndDiffer) {
  std::set<std::string> seen;
  for (int i = 0; i < 8; ++i) {
    absl::StatusOr<std::string> t = GenerateInternalToken();
    ASSERT_TRUE(t.ok()) << t.status();
    ASSERT_EQ(t->size(), 64u);
    for (char c : *t) EXPECT_TRUE(absl::ascii_isxdigit(static_cast<unsigned char>(c))) << *t;
    EXPECT_TRUE(InternalToken::FromString(*t).ok());
    seen.insert(*t);
  }
  EXPECT_EQ(seen.size(), 8u);
}

}  // namespace
}  // namespace expertmesh
