# Hello in Ruby: warden run examples/hello.rb
puts "hello from Ruby"
