/*
 * test_fe_lexer.c — the .dl lexer: token kinds, locations, numbers,
 * strings, comments, and lexical errors (which hang on tokens until the
 * parser reaches them), plus the UTF-8 check done before lexing.
 */
#include <criterion/criterion.h>

#include "frontend/fe.h"
#include "tests/testutil.h"

static Arena arena;
static Source src;

static TokenList lex(const char *text) {
  arena_free(&arena);
  arena_init(&arena);
  src = (Source){"t.dl", text};
  return lex_tokenize(&src, &arena);
}

static void fini(void) { arena_free(&arena); }

TestSuite(fe_lexer, .fini = fini);

static int count_errors(TokenList t) {
  int n = 0;
  for (int i = 0; i < t.n; i++)
    for (LexErr *e = t.v[i].errs; e; e = e->next) n++;
  return n;
}

Test(fe_lexer, token_kinds) {
  TokenList t = lex("input x: f32[N, 784] = 1.5 \"s\" @");
  TokenKind want[] = {TK_KEYWORD, TK_IDENT, TK_PUNCT, TK_IDENT, TK_PUNCT, TK_IDENT, TK_PUNCT,
                      TK_INT, TK_PUNCT, TK_PUNCT, TK_FLOAT, TK_STR, TK_PUNCT, TK_EOF};
  cr_assert_eq(t.n, (int)(sizeof want / sizeof want[0]));
  for (int i = 0; i < t.n; i++) cr_expect_eq(t.v[i].kind, want[i], "token %d", i);
  cr_expect(lex_is(&t.v[0], "input"));
  cr_expect(lex_is(&t.v[4], "["));
  cr_expect_eq(t.v[7].ival, 784);
  cr_expect_eq(count_errors(t), 0);
}

Test(fe_lexer, keywords_and_identifiers) {
  TokenList t = lex("model block return train label freeze as lr_group true false models _x9 relu");
  for (int i = 0; i < 10; i++) cr_expect_eq(t.v[i].kind, TK_KEYWORD, "token %d", i);
  for (int i = 10; i < 13; i++) cr_expect_eq(t.v[i].kind, TK_IDENT, "token %d", i);
}

Test(fe_lexer, locations) {
  TokenList t = lex("a = b\n  # comment line\n\tcc=  d # trailing\n\n  e");
  struct { int line, col, bol; } want[] = {{1, 1, 1}, {1, 3, 0}, {1, 5, 0}, {3, 2, 1},
                                           {3, 4, 0}, {3, 7, 0}, {5, 3, 1}};
  cr_assert_eq(t.n, 8);
  for (int i = 0; i < 7; i++) {
    cr_expect_eq(t.v[i].line, want[i].line, "line of token %d", i);
    cr_expect_eq(t.v[i].col, want[i].col, "col of token %d", i);
    cr_expect_eq(t.v[i].bol, want[i].bol, "bol of token %d", i);
  }
  cr_expect_eq(t.v[3].len, 2);
  cr_expect_eq(t.v[7].kind, TK_EOF);
}

Test(fe_lexer, numbers) {
  TokenList t = lex("1 1.5 1e-3 .5 2E+2 3. 0 007");
  cr_assert_eq(t.n, 9);
  cr_expect_eq(t.v[0].kind, TK_INT);
  cr_expect_eq(t.v[0].ival, 1);
  cr_expect_eq(t.v[1].kind, TK_FLOAT);
  cr_expect_float_eq(t.v[1].fval, 1.5, 1e-12);
  cr_expect_eq(t.v[2].kind, TK_FLOAT);
  cr_expect_float_eq(t.v[2].fval, 1e-3, 1e-15);
  cr_expect_eq(t.v[3].kind, TK_FLOAT);
  cr_expect_float_eq(t.v[3].fval, 0.5, 1e-12);
  cr_expect_float_eq(t.v[4].fval, 200.0, 1e-12);
  cr_expect_eq(t.v[5].kind, TK_FLOAT);
  cr_expect_eq(t.v[6].ival, 0);
  cr_expect_eq(t.v[7].ival, 7);
  cr_expect_eq(count_errors(t), 0);
}

Test(fe_lexer, bad_numbers) {
  const char *bad[] = {"1e", "1e+", "12abc", "1.2.3", "99999999999999999999", "1_000"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    TokenList t = lex(bad[i]);
    cr_expect_eq(t.n, 2, "%s is one token", bad[i]);
    cr_expect(t.v[0].bad, "%s is bad", bad[i]);
    cr_expect_eq(count_errors(t), 1, "%s gives one error", bad[i]);
  }
}

Test(fe_lexer, minus_is_an_operator) {
  TokenList t = lex("x-1 [N, -1]");
  cr_assert_eq(t.n, 10);
  cr_expect(lex_is(&t.v[1], "-"));
  cr_expect_eq(t.v[2].ival, 1);
  cr_expect(lex_is(&t.v[6], "-"));
}

Test(fe_lexer, strings) {
  TokenList t = lex("\"/usr/share\" \"a\\\"b\\\\c\\n\" \"\"");
  cr_assert_eq(t.n, 4);
  cr_expect_str_eq(t.v[0].str, "/usr/share");
  cr_expect_str_eq(t.v[1].str, "a\"b\\c\n");
  cr_expect_str_eq(t.v[2].str, "");
  cr_expect_eq(count_errors(t), 0);
}

Test(fe_lexer, unterminated_string) {
  TokenList t = lex("data = f(\"/usr/share\nbatch = 3");
  cr_expect_eq(t.v[4].kind, TK_STR);
  cr_expect(t.v[4].bad);
  cr_expect_str_eq(t.v[4].str, "/usr/share");
  cr_assert_not_null(t.v[4].errs);
  cr_expect_eq(t.v[4].errs->loc.line, 1);
  cr_expect_eq(t.v[4].errs->loc.col, 10);
  cr_expect(lex_is(&t.v[6], "="), "lexing goes on at the next line");
  cr_expect(t.v[5].bol);
}

Test(fe_lexer, unknown_escape) {
  TokenList t = lex("\"a\\qb\"");
  cr_expect_eq(count_errors(t), 1);
  cr_expect(strstr(t.v[0].errs->msg, "\\q") != NULL);
}

Test(fe_lexer, unexpected_characters_hang_on_the_next_token) {
  TokenList t = lex("a $ b\n\x01 c \xc3\xa9");
  cr_assert_eq(t.n, 4);
  cr_expect_str_eq(t.v[1].errs->msg, "unexpected character '$'");
  cr_expect_eq(t.v[1].errs->loc.col, 3);
  cr_expect_str_eq(t.v[2].errs->msg, "unexpected byte 0x01");
  cr_expect_str_eq(t.v[3].errs->msg, "unexpected character '\xc3\xa9'");
  cr_expect_eq(t.v[3].kind, TK_EOF);
}

Test(fe_lexer, comments) {
  TokenList t = lex("# only a comment\n#another\n");
  cr_expect_eq(t.n, 1);
  t = lex("x # y = z\n# \xc3\xa9 in a comment\ny");
  cr_expect_eq(t.n, 3);
  cr_expect_eq(t.v[1].line, 3);
}

Test(fe_lexer, utf8) {
  cr_expect_eq(lex_check_utf8("plain", 5), -1);
  cr_expect_eq(lex_check_utf8("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 14), -1);
  cr_expect_eq(lex_check_utf8("ab\xff", 3), 2);
  cr_expect_eq(lex_check_utf8("\xc0\xaf", 2), 0, "overlong");
  cr_expect_eq(lex_check_utf8("\xed\xa0\x80", 3), 0, "surrogate");
  cr_expect_eq(lex_check_utf8("x\xe2\x82", 3), 1, "truncated");
}

Test(fe_lexer, describe) {
  TokenList t = lex("relu \"s\"");
  cr_expect_str_eq(lex_describe(&t.v[0]), "'relu'");
  cr_expect_str_eq(lex_describe(&t.v[1]), "a string");
  cr_expect_str_eq(lex_describe(&t.v[2]), "end of file");
}
