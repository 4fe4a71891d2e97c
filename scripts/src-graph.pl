#!/usr/bin/perl
# scripts/src-graph.pl [--dot]: which file of src/ calls which, from the
# functions each .c file defines with external linkage and the calls of
# them in the others; fails, naming it, on a circle (A calls B calls ... A).
# Part of `make check-release`.  --dot prints the graph for Graphviz.
use strict;
use warnings;

my $dot = @ARGV && $ARGV[0] eq '--dot';
my (%def, %text);
for my $f (glob 'src/*.c')
{
	open my $fh, '<', $f or die "$f: $!";
	local $/;
	my $s = <$fh>;
	$s =~ s{/\*.*?\*/}{}gs;			# comments
	$s =~ s{"(?:[^"\\]|\\.)*"}{""}g;	# strings
	(my $name = $f) =~ s{^src/}{};
	$text{$name} = $s;
	# a definition: a name at the start of a line, after a line with its
	# type, not static
	while ($s =~ /^(\w[^\n;]*)\n(\w+)\(/mg)
	{
		my ($type, $fn) = ($1, $2);
		next if $type =~ /^static\b/ || $type =~ /^(?:PG_FUNCTION_INFO_V1|return)\b/;
		$def{$fn} = $name;
	}
}
my %edge;
for my $from (sort keys %text)
{
	for my $fn (keys %def)
	{
		my $to = $def{$fn};
		next if $to eq $from;
		$edge{$from}{$to} = 1 if $text{$from} =~ /\b\Q$fn\E\s*\(/;
	}
}
if ($dot)
{
	print "digraph src {\n";
	for my $a (sort keys %edge) { print qq{  "$a" -> "$_";\n} for sort keys %{ $edge{$a} }; }
	print "}\n";
	exit 0;
}
# Depth-first search for a back edge.
my (%state, @path, @circles);
sub visit
{
	my ($n) = @_;
	$state{$n} = 1;
	push @path, $n;
	for my $m (sort keys %{ $edge{$n} || {} })
	{
		if (($state{$m} // 0) == 1)
		{
			my @c = @path;
			shift @c while $c[0] ne $m;
			push @circles, join(' -> ', @c, $m);
		}
		visit($m) unless $state{$m};
	}
	pop @path;
	$state{$n} = 2;
}
visit($_) for grep { !$state{$_} } sort keys %text;
if (@circles)
{
	print "src-graph: circle: $_\n" for @circles;
	exit 1;
}
printf "src-graph: %d files, %d calls between them, no circle\n",
  scalar(keys %text), scalar(map { keys %$_ } values %edge);
exit 0;
