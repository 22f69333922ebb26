// Hello in Zig 0.17 (std.Io): warden run examples/hello.zig
const std = @import("std");

pub fn main(init: std.process.Init) !void {
    try std.Io.File.stdout().writeStreamingAll(init.io, "hello from Zig\n");
}
